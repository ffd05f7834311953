// Building blocks of the W8A8 decode products on Hopper's FP8 mma.sync (sm_89+ PTX, e4m3 x e4m3
// with float32 accumulators): the m16n8k32 product, 16-byte loads of streamed weights (not kept in
// L1, with a 256-byte L2 prefetch: a warp reads the next chunk of the same rows next) and of
// activations (kept in L1: every warp of a block reads the same rows), and programmatic dependent
// launch (griddepcontrol). Kernel code only.
//
// Operand layout shared by the kernels (gemm/w8a8_decode_gemm.cu, moe/moe_w8a8_grouped.cu): weights
// are the M side (16 rows per tile), tokens the N side (8 per fragment), both K-major as stored.
// Within a 128-wide K chunk (one scale block) lane (g, t) loads bytes [16t, 16t + 16) and
// [64 + 16t, 64 + 16t + 16) of weight rows g and g + 8 and of token g: one 16-byte load of the warp
// covers 64 contiguous bytes of 8 rows (whole 32-byte sectors). k32 step s takes word s of each
// vector: A = {row g lo, row g+8 lo, row g hi, row g+8 hi}, B = {token g lo, token g hi}. The
// fragment layout reads these as logical k {4t..4t+3} and {16+4t..16+4t+3}; weights and tokens use
// the same physical bytes for each (lane, step, slot), so every dot product is the plain one.
#pragma once
#include <cuda_fp8.h>

#include <cstdint>

namespace dsserve::cuda {

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// d += a b for one m16n8k32 tile of e4m3 operands, float32 accumulators (not volatile: the compiler
// may schedule it among the loads).
__device__ __forceinline__ void mma_e4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 16 bytes of a weight stream: read once, so not allocated in L1; L2 fetches the 256-byte block.
__device__ __forceinline__ uint4 ld_weight_16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// 16 bytes of activations (read by many warps: cached in L1). Read-only while the kernel runs.
__device__ __forceinline__ uint4 ld_act_16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// Programmatic dependent launch. wait: blocks until the grids this one depends on have completed
// and their memory is visible (a no-op when launched without the attribute); launch_dependents:
// lets the next kernel of the stream start its prologue.
__device__ __forceinline__ void griddep_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void griddep_launch_dependents() { asm volatile("griddepcontrol.launch_dependents;\n" ::); }

// Per-token-per-128 e4m3 quantization, as gemm/fp8_quant.cu: s = max(amax, 1e-12) / 448, q = e4m3(v / s)
// rounded to nearest, saturating.
__device__ __forceinline__ float fp8_block_scale(float amax) { return fmaxf(amax, 1e-12f) / 448.0f; }
__device__ __forceinline__ uint32_t quant_e4m3x4(float a, float b, float c, float d, float s) {
  const __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a / s, b / s), __NV_SATFINITE, __NV_E4M3);
  const __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c / s, d / s), __NV_SATFINITE, __NV_E4M3);
  return uint32_t(lo) | (uint32_t(hi) << 16);
}

}  // namespace dsserve::cuda
