// Block-FP8 weights widened to BF16 (see fp8_widen.h). One thread per 8 weights: one 8-byte load,
// four e4m3 pairs times their block scale (fp8_dequant.cuh, the oracle's rounding), one 16-byte store.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_dequant.cuh"
#include "backend/cuda/gemm/fp8_widen.h"

#include <algorithm>

namespace dsserve::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) fp8_widen_kernel(const Fp8WidenParams p) {
  const int64_t vecs_per_row = p.K / 8, total = p.rows * vecs_per_row;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / vecs_per_row, k = (i % vecs_per_row) * 8, row = p.row0 + r;
    const float scale = __ldg(p.w_scale + (row / 128) * p.scale_ld + k / 128);
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p.w + row * p.K + k));
    const uint4 o = make_uint4(e4m3x2_to_scaled_bf16x2(v.x, scale), e4m3x2_to_scaled_bf16x2(v.x >> 16, scale),
                               e4m3x2_to_scaled_bf16x2(v.y, scale), e4m3x2_to_scaled_bf16x2(v.y >> 16, scale));
    reinterpret_cast<uint4*>(p.out)[i] = o;
  }
}

}  // namespace

int64_t fp8_widen_chunk_rows(int64_t rows, int64_t K) {
  const int64_t blocks = std::max<int64_t>(1, kFp8WidenChunkBytes / (2 * std::max<int64_t>(K, 1) * 128));
  return std::min(rows, blocks * 128);
}

cudaError_t launch_fp8_widen(const Fp8WidenParams& p, cudaStream_t stream) {
  if (!p.w || !p.w_scale || !p.out || p.rows < 0 || p.row0 < 0 || p.K <= 0 || p.K % 128 != 0 ||
      p.scale_ld < p.K / 128 || reinterpret_cast<uintptr_t>(p.w) % 8 != 0 ||
      reinterpret_cast<uintptr_t>(p.out) % 16 != 0)
    return cudaErrorInvalidValue;
  const int64_t total = p.rows * (p.K / 8);
  if (total == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>(ceil_div(total, int64_t(kThreads)), int64_t(1) << 20);
  fp8_widen_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
