// Shared helpers for the text-layer tests: the DeepSeek-V3 tokenizer loaded once, JSON fixtures.
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "text/tokenizer.h"

namespace dsserve::test {

// The DeepSeek-V3 tokenizer directory: the fixtures copy, else the npm-installed one; "" if absent.
std::string deepseek_tokenizer_dir();
// Loaded once per process; call only after checking deepseek_tokenizer_dir() is non-empty.
const text::Tokenizer& deepseek_tokenizer();
nlohmann::json read_json_file(const std::string& path);
std::string read_text_file(const std::string& path);
// The folder of Node packages (third_party/npm/node_modules).
std::string node_modules_dir();
// Runs a shell command, returning its stdout; sets ok=false on a non-zero exit.
std::string run_command(const std::string& cmd, bool& ok);

}  // namespace dsserve::test

#define DS_REQUIRE_TOKENIZER()                                                              \
  do {                                                                                      \
    if (::dsserve::test::deepseek_tokenizer_dir().empty())                                  \
      GTEST_SKIP() << "DeepSeek-V3 tokenizer absent: provide ../shared/fixtures or run scripts/setup.sh"; \
  } while (0)
