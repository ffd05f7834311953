// Chat template tests: the checkpoint's own template against fixtures/chat_template_golden.json
// (Python jinja2), and R1-style / V3.1-style templates (tests/text/data) on further conversations
// against Python jinja2 as Hugging Face transformers configures it.
#include <gtest/gtest.h>

#include <chrono>

#include "common/test_paths.h"
#include "core/error.h"
#include "text/chat_template.h"
#include "text/text_test_util.h"

namespace dsserve::text {
namespace {

std::string data_dir() { return std::string(DSSERVE_SOURCE_DIR) + "/tests/text/data"; }

TEST(ChatTemplate, MatchesGolden) {
  DS_REQUIRE_FIXTURES();
  DS_REQUIRE_TOKENIZER();
  const ChatTemplate tmpl = ChatTemplate::from_tokenizer(test::deepseek_tokenizer());
  const auto golden = nlohmann::ordered_json::parse(test::read_text_file(test::fixtures_dir() + "/chat_template_golden.json"));
  ASSERT_FALSE(golden.empty());
  for (const auto& g : golden)
    EXPECT_EQ(tmpl.render(g["messages"], g["add_generation_prompt"].get<bool>()), g["text"].get<std::string>());
}

TEST(ChatTemplate, R1AndV31StyleTemplatesMatchJinja2) {
  DS_REQUIRE_TOKENIZER();
  const auto cases = nlohmann::ordered_json::parse(test::read_text_file(data_dir() + "/chat_cases.json"));
  ASSERT_GT(cases.size(), 10u);
  const Tokenizer& tok = test::deepseek_tokenizer();
  for (const auto& c : cases) {
    const std::string name = c["template"];
    const std::string src = name == "deepseek_v3" ? tok.chat_template : test::read_text_file(data_dir() + "/" + name);
    const ChatTemplate tmpl(src, tok.bos_token, tok.eos_token, name);
    SCOPED_TRACE(name + " " + c["messages"].dump());
    EXPECT_EQ(tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>(), c["tools"], c["extra"]),
              c["expected"].get<std::string>());
  }
}

TEST(ChatTemplate, TwentyTurnRenderIsFast) {
  DS_REQUIRE_TOKENIZER();
  const ChatTemplate tmpl = ChatTemplate::from_tokenizer(test::deepseek_tokenizer());
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "system"}, {"content", "You are a helpful assistant."}});
  for (int i = 0; i < 20; ++i)
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "Turn " + std::to_string(i) + " of a conversation about tokenizers."}});
  const std::string once = tmpl.render(messages, true);
  EXPECT_NE(once.find("Turn 19"), std::string::npos);
  const int reps = 200;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) tmpl.render(messages, true);
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
  RecordProperty("render_us", std::to_string(us));
  std::printf("20-turn chat template render: %.1f us\n", us);
}

TEST(ChatTemplate, MissingTemplateIsAClearError) {
  const std::string dir = test::temp_dir("notemplate");
  try {
    ChatTemplate::from_file(dir + "/missing.jinja", Tokenizer{});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.jinja: cannot open"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsserve::text
