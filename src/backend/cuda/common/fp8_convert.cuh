// Device-side FP8 (e4m3 / e5m2) conversions of the latent cache: one float rounded to FP8 (round to
// nearest even, saturating to the largest finite value, as the CPU's f32_to_e4m3 / f32_to_e5m2 do)
// and FP8 values widened to BF16 values, eight at once or two of a 32-bit word (exact for every
// finite value: each e4m3 and e5m2 value is a BF16 value), and the dispatch macro over the cache's
// element types.
// Kernel code only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "backend/cuda/common/device_utils.cuh"

namespace dsserve::cuda {

using fp8_e4m3 = __nv_fp8_e4m3;
using fp8_e5m2 = __nv_fp8_e5m2;

__device__ __forceinline__ float to_f(fp8_e4m3 v) { return float(v); }
__device__ __forceinline__ float to_f(fp8_e5m2 v) { return float(v); }
template <> __device__ __forceinline__ fp8_e4m3 from_f<fp8_e4m3>(float v) { return fp8_e4m3(v); }  // satfinite
template <> __device__ __forceinline__ fp8_e5m2 from_f<fp8_e5m2>(float v) { return fp8_e5m2(v); }

// Two FP8 values, one in the low byte of each 16-bit half of `lanes`, -> two BF16 values packed.
// Integer and BF16 multiply only (no conversion instructions, which issue at a fraction of the ALU
// rate): the FP8 magnitude bits are placed in the BF16 exponent and mantissa fields (a BF16 number
// 2^(127 - bias) times too small, subnormal for FP8 subnormals), then multiplied by 2^(127 - bias),
// exact for every finite FP8 value (BF16 arithmetic keeps subnormal inputs). FP8 NaN / infinity
// (never stored: the store saturates; NaN only from a NaN latent) read back finite (e4m3 NaN: 480).
// Bytes 1 and 3 of `lanes` are ignored: every bit that is not placed is masked off.
template <bool kE5m2>
__device__ __forceinline__ uint32_t fp8x2_lanes_to_bf16x2(uint32_t lanes) {
  constexpr int kShift = kE5m2 ? 5 : 4;                         // mantissa bits 2 / 3 -> BF16's 7
  constexpr uint32_t kMagnitude = kE5m2 ? 0x0fe00fe0u : 0x07f007f0u;
  constexpr unsigned short kScale = kE5m2 ? 0x7780 : 0x7B80;    // 2^112 / 2^120 in BF16
  const uint32_t bits = ((lanes << kShift) & kMagnitude) | ((lanes << 8) & 0x80008000u);
  const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(&bits);
  const __nv_bfloat16 s = __ushort_as_bfloat16(kScale);
  const __nv_bfloat162 r = __hmul2(v, __nv_bfloat162(s, s));
  return *reinterpret_cast<const uint32_t*>(&r);
}

// Eight FP8 values (8 bytes, the first in the lowest byte) -> eight BF16 values (16 bytes) in order.
template <bool kE5m2>
__device__ __forceinline__ uint4 fp8x8_to_bf16x8(uint2 v) {
  return make_uint4(fp8x2_lanes_to_bf16x2<kE5m2>(__byte_perm(v.x, 0, 0x4140)),
                    fp8x2_lanes_to_bf16x2<kE5m2>(__byte_perm(v.x, 0, 0x4342)),
                    fp8x2_lanes_to_bf16x2<kE5m2>(__byte_perm(v.y, 0, 0x4140)),
                    fp8x2_lanes_to_bf16x2<kE5m2>(__byte_perm(v.y, 0, 0x4342)));
}

// Of four FP8 values in one word (as a 32-bit shared-memory load or an ldmatrix register gives them),
// bytes 0 and 2 -> two BF16 values (byte 0's in the low half); the same widening as above.
template <bool kE5m2>
__device__ __forceinline__ uint32_t fp8x4_even_to_bf16x2(uint32_t quad) {
  return fp8x2_lanes_to_bf16x2<kE5m2>(quad);
}

// Bytes 1 and 3 of the word -> two BF16 values (byte 1's in the low half).
template <bool kE5m2>
__device__ __forceinline__ uint32_t fp8x4_odd_to_bf16x2(uint32_t quad) {
  return fp8x2_lanes_to_bf16x2<kE5m2>(quad >> 8);
}

}  // namespace dsserve::cuda

// Runs the statement with T bound to the C++ type of a latent cache's DType (F32, BF16, F8_E4M3,
// F8_E5M2); other dtypes make the enclosing launcher return cudaErrorInvalidValue.
#define DS_DISPATCH_CACHE(dtype, T, ...)                              \
  switch (dtype) {                                                    \
    case ::dsserve::DType::F8_E4M3: {                                 \
      using T = ::dsserve::cuda::fp8_e4m3;                            \
      __VA_ARGS__;                                                    \
      break;                                                          \
    }                                                                 \
    case ::dsserve::DType::F8_E5M2: {                                 \
      using T = ::dsserve::cuda::fp8_e5m2;                            \
      __VA_ARGS__;                                                    \
      break;                                                          \
    }                                                                 \
    default:                                                          \
      DS_DISPATCH_FLOAT(dtype, T, __VA_ARGS__);                       \
  }
