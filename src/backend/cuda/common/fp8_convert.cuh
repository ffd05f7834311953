// Device-side FP8 (e4m3 / e5m2) conversions of the latent cache: one float rounded to FP8 (round to
// nearest even, saturating to the largest finite value, as the CPU's f32_to_e4m3 / f32_to_e5m2 do)
// and eight FP8 values widened to eight BF16 values at once (exact: every e4m3 and e5m2 value is a
// BF16 value), and the dispatch macro over the cache's element types. Kernel code only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
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

// The FP8 element type of the cache of `kE5m2`.
template <bool kE5m2> struct Fp8Type { using type = fp8_e4m3; };
template <> struct Fp8Type<true> { using type = fp8_e5m2; };

// Two FP8 values (the low byte first) -> two BF16 values packed (the first in the low half): the
// hardware converts to f16x2 (exact), then to float and BF16 (exact).
template <bool kE5m2>
__device__ __forceinline__ uint32_t fp8x2_to_bf16x2(uint32_t two) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(two & 0xffffu), kE5m2 ? __NV_E5M2 : __NV_E4M3);
  const float2 f = __half22float2(__half2(h));
  const __nv_bfloat162 b = __float22bfloat162_rn(f);
  return *reinterpret_cast<const uint32_t*>(&b);
}

// Eight FP8 values (8 bytes, the first in the lowest byte) -> eight BF16 values (16 bytes) in order.
template <bool kE5m2>
__device__ __forceinline__ uint4 fp8x8_to_bf16x8(uint2 v) {
  return make_uint4(fp8x2_to_bf16x2<kE5m2>(v.x), fp8x2_to_bf16x2<kE5m2>(v.x >> 16), fp8x2_to_bf16x2<kE5m2>(v.y),
                    fp8x2_to_bf16x2<kE5m2>(v.y >> 16));
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
