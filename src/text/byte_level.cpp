// Byte-level alphabet tables built from the GPT-2 rule (see byte_level.h).
#include "text/byte_level.h"

#include <array>
#include <cstdint>

#include "text/utf8.h"

namespace dsserve::text {
namespace {

struct ByteLevelAlphabet {
  std::array<uint32_t, 256> code_point_of_byte{};
  std::array<int16_t, 324> byte_of_code_point{};  // the alphabet stays below U+0144

  ByteLevelAlphabet() {
    byte_of_code_point.fill(-1);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      code_point_of_byte[b] = printable ? b : next_extra++;
      byte_of_code_point[code_point_of_byte[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelAlphabet& alphabet() {
  static const ByteLevelAlphabet a;
  return a;
}

}  // namespace

std::string bytes_to_byte_level(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) utf8_append(out, alphabet().code_point_of_byte[b]);
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view spelled) {
  std::string out;
  out.reserve(spelled.size());
  size_t i = 0;
  while (i < spelled.size()) {
    if (utf8_sequence_length(spelled, i) == 0) return std::nullopt;
    const uint32_t cp = utf8_decode(spelled, i);
    if (cp >= alphabet().byte_of_code_point.size() || alphabet().byte_of_code_point[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(alphabet().byte_of_code_point[cp]));
  }
  return out;
}

}  // namespace dsserve::text
