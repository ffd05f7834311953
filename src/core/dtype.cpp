// Element types and float conversions (see dtype.h).
#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace dsserve {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::BF16: case DType::F16: return 2;
    case DType::F8_E4M3: case DType::F8_E5M2: case DType::U8: case DType::BOOL: case DType::I8: return 1;
    case DType::I64: return 8;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
    case DType::I8: return "I8";
  }
  return "?";
}

bool parse_dtype(std::string_view n, DType* out) {
  static constexpr DType all[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::F8_E5M2,
                                  DType::I32, DType::I64,  DType::U8,  DType::BOOL, DType::I8};
  for (DType t : all)
    if (dtype_name(t) == n) { *out = t; return true; }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal
      float f = std::ldexp(float(man), -24);
      return (h & 0x8000) ? -f : f;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;
  if (a < 6.103515625e-05f) {  // subnormal range: quantum 2^-24
    return sign | uint16_t(std::nearbyint(a * 16777216.0f));
  }
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  uint32_t mant = uint32_t(std::nearbyint((m * 2.0f - 1.0f) * 1024.0f));
  int exp = e - 1 + 15;
  if (mant == 1024) { mant = 0; ++exp; }
  if (exp >= 31) return sign | 0x7c00;
  return sign | uint16_t(exp << 10) | uint16_t(mant);
}

namespace {
// Generic small-float decode: ebits exponent bits, mbits mantissa bits, bias.
float decode_f8(uint8_t v, int mbits, int bias) {
  int sign = v >> 7;
  int exp = (v >> mbits) & ((1 << (7 - mbits)) - 1);
  int man = v & ((1 << mbits) - 1);
  float f = exp == 0 ? std::ldexp(float(man), 1 - bias - mbits)
                     : std::ldexp(float(man + (1 << mbits)), exp - bias - mbits);
  return sign ? -f : f;
}

// Round-to-nearest-even encode of a finite, already saturated magnitude.
uint8_t encode_f8(float a, int mbits, int bias) {
  if (a == 0.0f) return 0;
  int e;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  int exp = e - 1 + bias;
  if (exp < 1) {  // subnormal: quantum 2^(1-bias-mbits)
    int man = int(std::nearbyint(std::ldexp(a, bias - 1 + mbits)));
    return uint8_t(man);  // man == 2^mbits rolls into the smallest normal correctly
  }
  int man = int(std::nearbyint(std::ldexp(a, mbits - (e - 1)))) - (1 << mbits);
  if (man == (1 << mbits)) { man = 0; ++exp; }
  return uint8_t((exp << mbits) | man);
}
}  // namespace

float e4m3_to_f32(uint8_t v) {
  if ((v & 0x7f) == 0x7f) return NAN;
  return decode_f8(v, 3, 7);
}

uint8_t f32_to_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fmin(std::fabs(f), 448.0f);
  return sign | encode_f8(a, 3, 7);
}

float e5m2_to_f32(uint8_t v) {
  int exp = (v >> 2) & 0x1f;
  if (exp == 31) {
    if (v & 3) return NAN;
    return (v & 0x80) ? -INFINITY : INFINITY;
  }
  return decode_f8(v, 2, 15);
}

uint8_t f32_to_e5m2(float f) {
  if (std::isnan(f)) return 0x7f;
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fmin(std::fabs(f), 57344.0f);
  return sign | encode_f8(a, 2, 15);
}

void convert_to_f32(DType from, const void* src, float* dst, size_t n) {
  switch (from) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::F8_E4M3: {
      float lut[256];
      for (int i = 0; i < 256; ++i) lut[i] = e4m3_to_f32(uint8_t(i));
      auto* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = lut[s[i]];
      return;
    }
    case DType::F8_E5M2: {
      float lut[256];
      for (int i = 0; i < 256; ++i) lut[i] = e5m2_to_f32(uint8_t(i));
      auto* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = lut[s[i]];
      return;
    }
    default: fail("convert_to_f32: {} is not a floating type", dtype_name(from));
  }
}

void convert_from_f32(DType to, const float* src, void* dst, size_t n) {
  switch (to) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::F8_E4M3: {
      auto* d = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_e4m3(src[i]);
      return;
    }
    case DType::F8_E5M2: {
      auto* d = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_e5m2(src[i]);
      return;
    }
    default: fail("convert_from_f32: {} is not a floating type", dtype_name(to));
  }
}

}  // namespace dsserve
