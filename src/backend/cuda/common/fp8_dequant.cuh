// FP8 (e4m3) weight dequantization in registers, shared by the mma.sync kernels that read FP8
// block-scaled weights: the 32-bit words of a 16-byte vector, and two e4m3 values times their
// block scale rounded to a BF16 pair, exactly as the CPU oracle dequantizes at load.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace dsserve::cuda {

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Two e4m3 values (the low byte first) times their block scale, rounded to BF16: the dequantization
// of the CPU oracle (e4m3 -> f16 -> f32 are exact; the product is a float32 multiply).
__device__ __forceinline__ uint32_t e4m3x2_to_scaled_bf16x2(uint32_t two, float scale) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(two & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(__half2(h));
  const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * scale, f.y * scale);
  return (uint32_t(__bfloat16_as_ushort(b.y)) << 16) | __bfloat16_as_ushort(b.x);
}

}  // namespace dsserve::cuda
