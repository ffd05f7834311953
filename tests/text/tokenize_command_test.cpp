// Tests of the `dsserve tokenize` logic: ids per JSON line, chat rendering, bad lines reported.
#include <gtest/gtest.h>

#include <sstream>

#include "text/text_test_util.h"
#include "text/tokenize_command.h"

namespace dsserve::text {
namespace {

TEST(TokenizeCommand, IdsPerLine) {
  DS_REQUIRE_TOKENIZER();
  std::istringstream in("\"Hello, world!\"\n\"<｜begin▁of▁sentence｜>hi\"\n\"\"\n");
  std::ostringstream out;
  EXPECT_EQ(run_tokenize_command(test::deepseek_tokenizer_dir(), false, in, out), 0);
  EXPECT_EQ(out.str(), "[19923,14,2058,3]\n[0,6366]\n[]\n");
}

TEST(TokenizeCommand, ChatLines) {
  DS_REQUIRE_TOKENIZER();
  std::istringstream in(R"({"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": true})" "\n");
  std::ostringstream out;
  EXPECT_EQ(run_tokenize_command(test::deepseek_tokenizer_dir(), true, in, out), 0);
  EXPECT_EQ(out.str(), "\"<｜begin▁of▁sentence｜><｜User｜>Hello!<｜Assistant｜>\"\n");
}

TEST(TokenizeCommand, BadLinesAreReportedAndSkipped) {
  DS_REQUIRE_TOKENIZER();
  std::istringstream in("[1, 2]\nnot json\n\"ok\"\n");
  std::ostringstream out;
  EXPECT_EQ(run_tokenize_command(test::deepseek_tokenizer_dir(), false, in, out), 1);
  const std::string s = out.str();
  EXPECT_NE(s.find("line 1: expected a JSON string, found array"), std::string::npos) << s;
  EXPECT_NE(s.find("line 2: not valid JSON"), std::string::npos) << s;
  EXPECT_NE(s.find("\n[633]\n"), std::string::npos) << s;
}

TEST(TokenizeCommand, MissingTokenizerFails) {
  std::istringstream in("\"x\"\n");
  std::ostringstream out;
  EXPECT_EQ(run_tokenize_command("/nonexistent", false, in, out), 1);
}

}  // namespace
}  // namespace dsserve::text
