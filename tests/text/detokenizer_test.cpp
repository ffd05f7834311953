// Streaming detokenizer tests: random token sequences (multi-byte characters, emoji, raw byte
// tokens that split characters, special tokens) stream to exactly the full decode in valid UTF-8
// pieces; stop strings across token boundaries are trimmed or kept.
#include <gtest/gtest.h>

#include <random>

#include "text/detokenizer.h"
#include "text/text_test_util.h"
#include "text/utf8.h"

namespace dsserve::text {
namespace {

std::string stream(const Tokenizer& tok, const std::vector<int32_t>& ids, DetokenizeOptions opt,
                   std::vector<std::string>* pieces = nullptr) {
  IncrementalDetokenizer d(tok, std::move(opt));
  std::string all;
  for (int32_t id : ids) {
    std::string p = d.push(id);
    EXPECT_TRUE(is_valid_utf8(p));
    if (pieces) pieces->push_back(p);
    all += p;
  }
  std::string p = d.finish();
  EXPECT_TRUE(is_valid_utf8(p));
  if (pieces) pieces->push_back(p);
  return all + p;
}

std::vector<int32_t> random_ids(const Tokenizer& tok, std::mt19937& rng) {
  static const char* kPieces[] = {"Hello", " world", "😀", "🚀🚀", "👍🏽", "🇫🇷", "中文字符", "日本語", "한국어", "é", "ß",
                                  "\n", "  ", "١٢٣", "अ", "ก", "<｜User｜>", "<｜end▁of▁sentence｜>", "€", "\u200b"};
  std::vector<int32_t> ids;
  const int n = std::uniform_int_distribution<int>(1, 40)(rng);
  for (int i = 0; i < n; ++i) {
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
    if (kind < 5) {
      auto e = tok.encode(kPieces[rng() % std::size(kPieces)]);
      ids.insert(ids.end(), e.begin(), e.end());
    } else if (kind < 8) {  // a single byte token: may split or break a character
      const char b = static_cast<char>(rng() % 256);
      // the token whose bytes are exactly b
      static std::vector<int32_t> byte_ids = [&] {
        std::vector<int32_t> v(256, -1);
        for (int32_t id = 0; id < tok.vocab_size(); ++id) {
          if (tok.is_added(id) || tok.token_text(id).empty()) continue;
          const std::string& bytes = tok.token_bytes(id);
          if (bytes.size() == 1) v[static_cast<unsigned char>(bytes[0])] = id;
        }
        return v;
      }();
      ids.push_back(byte_ids[static_cast<unsigned char>(b)]);
    } else {
      ids.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(tok.vocab_size())));
    }
  }
  return ids;
}

TEST(Detokenizer, RandomSequencesStreamToFullDecode) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 3000; ++trial) {
    const auto ids = random_ids(tok, rng);
    for (bool skip : {false, true}) {
      DetokenizeOptions opt;
      opt.skip_special_tokens = skip;
      const std::string streamed = stream(tok, ids, opt);
      ASSERT_EQ(streamed, tok.decode(ids, skip)) << "trial " << trial;
    }
  }
}

TEST(Detokenizer, EmojiBytesAreHeldUntilComplete) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  const auto ids = tok.encode("a🚀");
  ASSERT_GE(ids.size(), 3u);
  std::vector<std::string> pieces;
  EXPECT_EQ(stream(tok, ids, {}, &pieces), "a🚀");
  for (const auto& p : pieces) EXPECT_TRUE(p.empty() || p == "a" || p == "🚀" || p == "a🚀") << p;
}

TEST(Detokenizer, TruncatedCharacterAtEndBecomesReplacement) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  auto ids = tok.encode("🚀");
  ids.pop_back();
  EXPECT_EQ(stream(tok, ids, {}), tok.decode(ids));
  EXPECT_EQ(stream(tok, ids, {}), "\xEF\xBF\xBD");
}

TEST(Detokenizer, StopStringAcrossTokensIsTrimmed) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  const auto ids = tok.encode("The answer is 42. END OF TEXT and more");
  DetokenizeOptions opt;
  opt.stop = {"END OF", "zzz"};
  IncrementalDetokenizer d(tok, opt);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  out += d.finish();
  EXPECT_EQ(out, "The answer is 42. ");
  ASSERT_TRUE(d.stopped());
  EXPECT_EQ(*d.matched_stop(), "END OF");
}

TEST(Detokenizer, NoStopTrimKeepsStopString) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  const auto ids = tok.encode("abc STOP def");
  DetokenizeOptions opt;
  opt.stop = {"STOP"};
  opt.no_stop_trim = true;
  const std::string out = stream(tok, ids, opt);
  EXPECT_EQ(out.substr(0, 8), "abc STOP");
  EXPECT_EQ(out.find("def"), std::string::npos);
}

TEST(Detokenizer, PartialStopPrefixIsReleasedWhenItDiverges) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  DetokenizeOptions opt;
  opt.stop = {"</stop>"};
  std::vector<std::string> pieces;
  const auto ids = tok.encode("x </sto y");
  EXPECT_EQ(stream(tok, ids, opt, &pieces), "x </sto y");
}

TEST(Detokenizer, StopStringInsideMultibyteText) {
  DS_REQUIRE_TOKENIZER();
  const Tokenizer& tok = test::deepseek_tokenizer();
  std::mt19937 rng(7);
  // every stop string is found regardless of how the text is tokenized around it
  for (int trial = 0; trial < 200; ++trial) {
    auto ids = random_ids(tok, rng);
    const std::string full = tok.decode(ids, true);
    if (full.size() < 4) continue;
    const size_t a = rng() % (full.size() - 2);
    size_t b = a + 1 + rng() % 6;
    std::string stop = full.substr(a, std::min(b, full.size()) - a);
    if (!is_valid_utf8(stop)) continue;
    DetokenizeOptions opt;
    opt.stop = {stop};
    EXPECT_EQ(stream(tok, ids, opt), full.substr(0, full.find(stop))) << trial;
  }
}

}  // namespace
}  // namespace dsserve::text
