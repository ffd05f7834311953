// Fuzzes the DeepSeek-V3 tokenizer: encode of the input as text (with and without special tokens;
// invalid UTF-8 must be an Error, not a crash) and decode of the input read as token ids.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "common/test_paths.h"
#include "core/error.h"
#include "text/tokenizer.h"

using namespace dsserve;

namespace {
std::unique_ptr<text::Tokenizer> tok;
}  // namespace

// The tokenizer loads once, before fuzzing (its seconds under the sanitizers count against no input).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string dir = test::npm_tokenizer_dir();
  if (dir.empty()) {
    fprintf(stderr, "fuzz_tokenizer: the DeepSeek-V3 tokenizer is absent: run scripts/setup.sh\n");
    abort();
  }
  tok = std::make_unique<text::Tokenizer>(text::Tokenizer::load(dir));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    std::vector<int32_t> ids = tok->encode(text, data[0] & 1, data[0] & 2);
    std::string back = tok->decode(ids, data[0] & 4);
    if (!(data[0] & 2) && !(data[0] & 1) && back != text) abort();  // plain text round-trips exactly
  } catch (const Error&) {
  }
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  for (int32_t& id : ids) id = int32_t(uint32_t(id) % uint32_t(tok->vocab_size() + 8));  // some unknown ids too
  try {
    tok->decode(ids, data[0] & 8);
  } catch (const Error&) {
  }
  return 0;
}
