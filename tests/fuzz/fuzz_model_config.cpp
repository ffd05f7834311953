// Fuzzes config.json parsing and validation (ModelConfig::parse), with the input's first line as
// --json-model-override-args when it starts with '{'. Malformed input must be a dsserve::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/model_config.h"

using namespace dsserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size), overrides;
  if (!text.empty() && text[0] == '{') {
    const size_t nl = text.find('\n');
    if (nl != std::string::npos) {
      overrides = text.substr(0, nl);
      text = text.substr(nl + 1);
    }
  }
  try {
    ModelConfig::parse(text, "fuzz/config.json", overrides);
  } catch (const Error&) {
  }
  return 0;
}
