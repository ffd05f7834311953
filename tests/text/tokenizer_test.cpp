// Tokenizer tests: golden ids from Hugging Face tokenizers, round trips, special-token handling,
// config fields, and clear errors for malformed tokenizer.json.
#include <gtest/gtest.h>

#include "common/test_paths.h"
#include "core/error.h"
#include "text/text_test_util.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"

namespace dsserve::text {
namespace {

using test::deepseek_tokenizer;

TEST(Tokenizer, MatchesHuggingFaceGolden) {
  DS_REQUIRE_FIXTURES();
  DS_REQUIRE_TOKENIZER();
  const auto golden = test::read_json_file(test::fixtures_dir() + "/tokenizer_golden.json");
  ASSERT_EQ(golden.size(), 335u);
  const Tokenizer& tok = deepseek_tokenizer();
  int mismatches = 0;
  for (const auto& g : golden) {
    const std::string text = g["text"];
    const auto expected = g["ids"].get<std::vector<int32_t>>();
    const auto ids = tok.encode(text);
    if (ids != expected && ++mismatches <= 10) ADD_FAILURE() << "ids differ for " << nlohmann::json(text).dump();
    EXPECT_EQ(tok.decode(ids), g["decoded"].get<std::string>());
    EXPECT_EQ(tok.decode(expected), text);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Tokenizer, ConfigFields) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = deepseek_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 128815);
  EXPECT_EQ(tok.bos_id, 0);
  EXPECT_EQ(tok.eos_id, 1);
  EXPECT_EQ(tok.bos_token, "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tok.eos_token, "<｜end▁of▁sentence｜>");
  EXPECT_TRUE(tok.add_bos_token);
  EXPECT_FALSE(tok.chat_template.empty());
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(tok.token_id("<｜User｜>").value()));
  EXPECT_TRUE(tok.is_added(tok.token_id("<｜User｜>").value()));
  EXPECT_EQ(tok.token_text(tok.token_id("Ġthe").value()), "Ġthe");
  EXPECT_FALSE(tok.token_id("no such token").has_value());
}

TEST(Tokenizer, AddSpecialTokensPrependsBos) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = deepseek_tokenizer();
  auto plain = tok.encode("Hello");
  auto with = tok.encode("Hello", /*add_special_tokens=*/true);
  ASSERT_EQ(with.size(), plain.size() + 1);
  EXPECT_EQ(with[0], tok.bos_id);
}

TEST(Tokenizer, SpecialTokensOnlyWhenAllowed) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = deepseek_tokenizer();
  const std::string text = "a<｜end▁of▁sentence｜>b<｜User｜>";
  auto allowed = tok.encode(text);
  ASSERT_EQ(allowed.size(), 4u);
  EXPECT_EQ(allowed[1], 1);
  auto literal = tok.encode(text, false, /*allow_special=*/false);
  EXPECT_GT(literal.size(), 4u);
  EXPECT_EQ(literal.back(), tok.token_id("<｜User｜>").value());  // non-special added tokens still match
  EXPECT_EQ(tok.decode(literal), text);
}

TEST(Tokenizer, SkipSpecialTokensOnDecode) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = deepseek_tokenizer();
  auto ids = tok.encode("<｜begin▁of▁sentence｜>hi<｜User｜>");
  EXPECT_EQ(tok.decode(ids, true), "hi<｜User｜>");
}

TEST(Tokenizer, SplitCharacterDecodesLossy) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = deepseek_tokenizer();
  auto ids = tok.encode("🚀");
  ASSERT_GT(ids.size(), 1u);  // the rocket is several byte tokens
  EXPECT_EQ(tok.decode(std::span<const int32_t>(ids.data(), 1)), "\xEF\xBF\xBD");
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = deepseek_tokenizer();
  EXPECT_THROW(tok.encode("ab\xFF"), Error);
  const int32_t unknown[] = {999999};
  EXPECT_EQ(tok.decode(unknown), "") << "ids the tokenizer does not know decode to nothing, as in Hugging Face";
}

void expect_error_containing(const std::string& tj, const std::string& needle) {
  try {
    Tokenizer::from_json_text(tj, "");
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, MalformedJsonErrors) {
  expect_error_containing("{not json", "not valid JSON");
  expect_error_containing("[]", "expected a JSON object");
  expect_error_containing("{}", "missing field \"model\"");
  expect_error_containing(R"({"model": {"type": "WordPiece"}})", "expected \"BPE\"");
  expect_error_containing(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "no token for byte");
  expect_error_containing(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "NFC"}})",
                          "unsupported normalizer");
  expect_error_containing(
      R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"}})",
      "cannot compile regex");
  expect_error_containing(
      R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"}})",
      "found 'Sideways'");
  // Types the checks do not name one by one still give an error naming the file.
  expect_error_containing(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": {"x": 1}}})",
                          "a field of an unexpected JSON type or value");
  expect_error_containing(R"({"model": {"type": 7, "vocab": {}, "merges": []}})", "a field of an unexpected JSON type");
}

TEST(Tokenizer, MissingDirectoryErrors) {
  try {
    Tokenizer::load("/nonexistent/dir");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/tokenizer.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsserve::text

namespace dsserve::text {
namespace {
// Models pad the vocabulary beyond the tokenizer (DeepSeek-V3: 129,280 embedding rows for 128,815
// tokens): such ids, and negative ones, decode to nothing, as Hugging Face's decode does.
TEST(TokenizerPadding, IdsBeyondTheTokenizerDecodeToNothing) {
  std::string dir = dsserve::test::npm_tokenizer_dir();
  if (dir.empty()) GTEST_SKIP() << "DeepSeek-V3 tokenizer files absent: run scripts/setup.sh";
  Tokenizer tok = Tokenizer::load(dir);
  std::vector<int32_t> ids = tok.encode("Hello world");
  std::vector<int32_t> padded = ids;
  padded.insert(padded.begin() + 1, 129279);
  padded.push_back(-5);
  EXPECT_EQ(tok.decode(padded), tok.decode(ids));
  IncrementalDetokenizer d(tok, {});
  std::string streamed;
  for (int32_t id : padded) streamed += d.push(id);
  streamed += d.finish();
  EXPECT_EQ(streamed, "Hello world");
}
}  // namespace
}  // namespace dsserve::text
