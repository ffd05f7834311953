// Fuzzes the checkpoint readers: the input as a whole .safetensors file (header length, JSON
// header, every tensor entry against the data section) when the first byte is even, else as the
// text of model.safetensors.index.json. Malformed input must be a dsserve::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"

using namespace dsserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  try {
    if (data[0] % 2 == 0) {
      SafetensorsHeader h = parse_safetensors_header(data + 1, size - 1, "fuzz.safetensors");
      for (auto& [name, info] : h.tensors)
        if (info.data_offset + info.nbytes > size - 1) abort();  // a view would read past the file
    } else {
      parse_weight_map(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), "fuzz.index.json");
    }
  } catch (const Error&) {
  }
  return 0;
}
