// Permutation kernels of the routed experts (see moe_kernels.h): counting pairs per expert,
// scattering them into per-expert row segments, and the weighted un-permute back to token order.
// The un-permute sums a token's top_k rows in a fixed order, so its result does not depend on
// the (atomic) order of rows inside a segment.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/moe/moe_kernels.h"

namespace dsserve::cuda {

namespace {

__global__ void moe_shift_ids_kernel(const int32_t* ids, int32_t* out, int64_t n, int32_t offset) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = ids[i] - offset;
}

__global__ void moe_count_kernel(MoeCountParams p) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.pairs) return;
  int e = p.topk_ids[i];
  if (e >= 0 && e < p.experts) atomicAdd(&p.counts[e], 1);
}

__global__ void moe_scatter_kernel(MoeScatterParams p) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.pairs) return;
  int e = p.topk_ids[i];
  if (e < 0 || e >= p.experts) {
    p.pair_row[i] = -1;
    return;
  }
  int pos = p.seg_offset[e] + atomicAdd(&p.cursor[e], 1);
  p.row_token[pos] = int32_t(i / p.top_k);
  p.pair_row[i] = pos;
}

// One block per expert: every row of its (padded) segment learns the segment's extent.
__global__ void moe_segments_kernel(MoeScatterParams p) {
  const int e = blockIdx.x;
  const int32_t s0 = p.seg_offset[e], n = p.seg_rows[e];
  for (int32_t r = threadIdx.x; r < n; r += blockDim.x) {
    p.row_seg_start[s0 + r] = s0;
    p.row_seg_rows[s0 + r] = n;
  }
}

__global__ void moe_unpermute_kernel(MoeUnpermuteParams p) {
  const int64_t t = blockIdx.x;
  const bf16* y = static_cast<const bf16*>(p.y);
  for (int64_t c = threadIdx.x; c < p.hidden; c += blockDim.x) {
    float acc = 0.0f;
    for (int k = 0; k < p.top_k; ++k) {
      int32_t row = p.pair_row[t * p.top_k + k];
      if (row >= 0) acc = fmaf(p.topk_weights[t * p.top_k + k], to_f(y[int64_t(row) * p.hidden + c]), acc);
    }
    static_cast<bf16*>(p.out)[t * p.hidden + c] = __float2bfloat16_rn(acc);
  }
}

}  // namespace

cudaError_t launch_moe_shift_ids(const int32_t* ids, int32_t* out, int64_t n, int32_t offset, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  moe_shift_ids_kernel<<<unsigned(ceil_div(n, 256)), 256, 0, stream>>>(ids, out, n, offset);
  return cudaGetLastError();
}

cudaError_t launch_moe_count(const MoeCountParams& p, cudaStream_t stream) {
  if (p.pairs == 0) return cudaSuccess;
  moe_count_kernel<<<unsigned(ceil_div(p.pairs, 256)), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_moe_scatter(const MoeScatterParams& p, cudaStream_t stream) {
  if (p.pairs == 0) return cudaSuccess;
  moe_scatter_kernel<<<unsigned(ceil_div(p.pairs, 256)), 256, 0, stream>>>(p);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  moe_segments_kernel<<<unsigned(p.experts), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_moe_unpermute(const MoeUnpermuteParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  moe_unpermute_kernel<<<unsigned(p.tokens), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
