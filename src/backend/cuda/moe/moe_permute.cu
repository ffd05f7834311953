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

// One thread per 8 output columns of one token (blockIdx.y), when hidden % 8 == 0 and y / out are
// 16-byte aligned: the top_k rows' vectors are loaded together (up to 8 loads in flight per thread,
// so a token's sum costs one memory latency rather than top_k of them), then summed in k order
// with the same float32 fma chain as the scalar kernel below (identical results).
constexpr int kUnpermuteThreads = 128, kUnpermuteBatch = 8;

__global__ void __launch_bounds__(kUnpermuteThreads) moe_unpermute_vec8_kernel(MoeUnpermuteParams p) {
  const int64_t t = blockIdx.y;
  const int64_t c = (int64_t(blockIdx.x) * kUnpermuteThreads + threadIdx.x) * 8;
  if (c >= p.hidden) return;
  const bf16* y = static_cast<const bf16*>(p.y);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int k0 = 0; k0 < p.top_k; k0 += kUnpermuteBatch) {
    uint4 v[kUnpermuteBatch];
    float w[kUnpermuteBatch];
    bool has[kUnpermuteBatch];  // pairs of out-of-range experts (row < 0) contribute nothing
#pragma unroll
    for (int j = 0; j < kUnpermuteBatch; ++j) {
      const int k = k0 + j;
      const int32_t row = k < p.top_k ? p.pair_row[t * p.top_k + k] : -1;
      has[j] = row >= 0;
      w[j] = has[j] ? p.topk_weights[t * p.top_k + k] : 0.0f;
      v[j] = has[j] ? __ldg(reinterpret_cast<const uint4*>(y + int64_t(row) * p.hidden + c)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kUnpermuteBatch; ++j) {
      if (!has[j]) continue;
      const bf16* e = reinterpret_cast<const bf16*>(&v[j]);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = fmaf(w[j], to_f(e[i]), acc[i]);
    }
  }
  uint4 o;
  bf16* ob = reinterpret_cast<bf16*>(&o);
#pragma unroll
  for (int i = 0; i < 8; ++i) ob[i] = __float2bfloat16_rn(acc[i]);
  *reinterpret_cast<uint4*>(static_cast<bf16*>(p.out) + t * p.hidden + c) = o;
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
  const bool vec = p.hidden % 8 == 0 && reinterpret_cast<uintptr_t>(p.y) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(p.out) % 16 == 0 && p.tokens <= 65535;
  if (vec)
    moe_unpermute_vec8_kernel<<<dim3(unsigned(ceil_div(p.hidden / 8, kUnpermuteThreads)), unsigned(p.tokens)),
                                kUnpermuteThreads, 0, stream>>>(p);
  else
    moe_unpermute_kernel<<<unsigned(p.tokens), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
