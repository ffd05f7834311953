// Device building blocks of the quantized products (sm_80+ PTX only): the m16n8k16 BF16 and
// m16n8k32 S8 products, the W4 A-fragment dequantization ((q - zero) as exact BF16 integers from
// the repacked nibbles, quant_layout.h), the scale-zero words, and the epilogue helpers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace dsserve::cuda::quant {

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_s8_16832(int (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// (128 + zero) as a BF16 pair: 0x4300 is 128.0, and 128 + v for v < 128 only sets mantissa bits.
__device__ __forceinline__ uint32_t w4_zero_pair(uint32_t scale_zero_word) {
  const uint32_t z = (scale_zero_word >> 16) & 0xFu;
  return 0x43004300u | z | (z << 16);
}
__device__ __forceinline__ float w4_scale(uint32_t scale_zero_word) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(scale_zero_word & 0xFFFFu)));
}

// Nibbles j and j + 4 of w as the BF16 pair (q_j - z, q_{j+4} - z), exactly (small integers).
__device__ __forceinline__ uint32_t w4_pair(uint32_t w, int j, uint32_t zero_pair) {
  const uint32_t biased = ((w >> (4 * j)) & 0x000F000Fu) | 0x43004300u;  // 128 + q, as BF16
  const __nv_bfloat162 d = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&biased),
                                   *reinterpret_cast<const __nv_bfloat162*>(&zero_pair));
  return *reinterpret_cast<const uint32_t*>(&d);
}

// The A fragment of one m16 tile and k16 step from its repacked word: rows g (zero pair zg) and
// g + 8 (zero pair zh).
__device__ __forceinline__ void w4_a_fragment(uint32_t w, uint32_t zg, uint32_t zh, uint32_t (&a)[4]) {
  a[0] = w4_pair(w, 0, zg);
  a[1] = w4_pair(w, 1, zh);
  a[2] = w4_pair(w, 2, zg);
  a[3] = w4_pair(w, 3, zh);
}

template <typename T>
__device__ __forceinline__ T out_of(float v);
template <>
__device__ __forceinline__ float out_of<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 out_of<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float silu_mul(float gate, float up) { return gate / (1.0f + __expf(-gate)) * up; }

}  // namespace dsserve::cuda::quant
