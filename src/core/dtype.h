// Element types of checkpoints and tensors (bf16, f16, fp8 e4m3/e5m2, int8, ...) and scalar conversions
// to and from float32. Conversions are exact where the format allows, round-to-nearest-even otherwise.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dsserve {

enum class DType : uint8_t { F32, BF16, F16, F8_E4M3, F8_E5M2, I32, I64, U8, BOOL, I8 };

size_t dtype_size(DType t);
// Safetensors spelling ("BF16", "F8_E4M3", ...). Throws on unknown names.
std::string_view dtype_name(DType t);
bool parse_dtype(std::string_view name, DType* out);

inline float bf16_to_f32(uint16_t v) {
  uint32_t u = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float f);
// float8 e4m3fn: bias 7, no infinities, 0x7f/0xff are NaN, largest finite 448.
float e4m3_to_f32(uint8_t v);
uint8_t f32_to_e4m3(float f);  // saturates to +-448
// float8 e5m2: bias 15, IEEE-like with infinities, largest finite 57344.
float e5m2_to_f32(uint8_t v);
uint8_t f32_to_e5m2(float f);  // saturates to +-57344

// Converts n elements of type `from` at src to float32 at dst (floating types only).
void convert_to_f32(DType from, const void* src, float* dst, size_t n);
// Converts n float32 values to type `to` (floating types only).
void convert_from_f32(DType to, const float* src, void* dst, size_t n);

}  // namespace dsserve
