// Helpers shared by the text-layer tests (see text_test_util.h); lives in a *_test.cpp file so the
// test glob picks it up.
#include "text/text_test_util.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/test_paths.h"

namespace dsserve::test {

std::string deepseek_tokenizer_dir() {
  const std::string fx = fixtures_dir();
  if (!fx.empty() && std::filesystem::exists(fx + "/deepseek-v3-tokenizer/tokenizer.json"))
    return fx + "/deepseek-v3-tokenizer";
  return npm_tokenizer_dir();
}

const text::Tokenizer& deepseek_tokenizer() {
  static const text::Tokenizer tok = text::Tokenizer::load(deepseek_tokenizer_dir());
  return tok;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json read_json_file(const std::string& path) { return nlohmann::json::parse(read_text_file(path)); }

std::string node_modules_dir() { return std::string(DSSERVE_SOURCE_DIR) + "/third_party/npm/node_modules"; }

std::string run_command(const std::string& cmd, bool& ok) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    ok = false;
    return out;
  }
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ok = pclose(p) == 0;
  return out;
}

}  // namespace dsserve::test
