// Where tests find the golden fixtures and the tokenizer files installed at set-up.
#pragma once
#include <string>

namespace dsserve::test {

// $DSSERVE_FIXTURES, else ../shared/fixtures beside the source tree; "" when neither exists.
std::string fixtures_dir();
// The DeepSeek-V3 tokenizer files installed by scripts/setup.sh; "" when absent.
std::string npm_tokenizer_dir();
// The --quantization a fixture checkpoint needs: w8a8_int8 for tiny-v3-int8-channel (its config.json
// has no quantization_config, as the published channel-INT8 checkpoints), "" for the others.
std::string fixture_quantization(const std::string& fixture_dir);
// A fresh empty temporary directory (removed at exit is not guaranteed).
std::string temp_dir(const std::string& tag);

}  // namespace dsserve::test

// Skips the current test, saying why, when the fixtures are absent.
#define DS_REQUIRE_FIXTURES()                                                               \
  do {                                                                                      \
    if (::dsserve::test::fixtures_dir().empty())                                            \
      GTEST_SKIP() << "golden fixtures absent: set $DSSERVE_FIXTURES or provide ../shared"; \
  } while (0)
