// Kernels of the MoE prefill path (see moe_prefill.h): pair counting, the segment layout (one
// block: a scan over at most 1024 experts), the scatter of pairs into segments, and the fused
// SiLU-and-mul quantization of the gate_up products.
#include <cuda_fp8.h>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/gemm/sm90/fp8_gemm_layout.h"
#include "backend/cuda/moe/moe_prefill.h"

namespace dsserve::cuda {

namespace {

__global__ void prefill_count_kernel(MoePrefillGroupParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.pairs) return;
  const int e = p.topk_ids[i];
  if (e >= 0 && e < p.experts) atomicAdd(&p.counts[e], 1);
}

// One block of kMoePrefillMaxExperts threads: exclusive scan of the padded segment sizes.
__global__ void __launch_bounds__(kMoePrefillMaxExperts) prefill_layout_kernel(MoePrefillGroupParams p) {
  __shared__ int32_t part[kMoePrefillMaxExperts / 32];
  const int e = threadIdx.x, lane = e % 32, warp = e / 32;
  const int32_t count = e < p.experts ? p.counts[e] : 0;
  const int32_t padded = (count + sm90::kGroupBlockM - 1) / sm90::kGroupBlockM * sm90::kGroupBlockM;
  int32_t incl = padded;  // inclusive scan within the warp
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int32_t v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) part[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int32_t w = part[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t v = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += v;
    }
    part[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const int32_t start = incl - padded + (warp > 0 ? part[warp - 1] : 0);
  if (e < p.experts) {
    p.group_end[e] = start + count;
    p.cursor[e] = 0;
  }
  if (p.experts_run != nullptr) {
    const unsigned active = __syncthreads_count(count > 0);
    if (e == 0) atomicAdd(p.experts_run, (unsigned long long)active);
  }
}

__global__ void prefill_scatter_kernel(MoePrefillGroupParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.pairs) return;
  const int e = p.topk_ids[i];
  if (e < 0 || e >= p.experts) {
    p.pair_row[i] = -1;
    return;
  }
  const int64_t start = sm90::group_start(p.group_end, e);
  const int64_t row = start + atomicAdd(&p.cursor[e], 1);
  p.row_token[row] = int32_t(i / p.top_k);
  p.pair_row[i] = int32_t(row);
}

// One warp per (row, 128-column block): four columns per lane.
__global__ void silu_quant_kernel(MoeSiluQuantParams p) {
  const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t blocks = p.inter / 128;
  if (warp_id >= p.rows * blocks) return;
  const int64_t r = warp_id / blocks, b = warp_id % blocks;
  if (p.row_token[r] < 0) return;
  const bf16* g = static_cast<const bf16*>(p.gate_up) + r * 2 * p.inter + b * 128 + lane * 4;
  const uint2 gv = *reinterpret_cast<const uint2*>(g), uv = *reinterpret_cast<const uint2*>(g + p.inter);
  const bf16* gs = reinterpret_cast<const bf16*>(&gv);
  const bf16* us = reinterpret_cast<const bf16*>(&uv);
  float v[4], amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float a = to_f(gs[j]), u = to_f(us[j]);
    v[j] = to_f(__float2bfloat16_rn(a / (1.0f + __expf(-a)) * u));
    amax = fmaxf(amax, fabsf(v[j]));
  }
  amax = warp_max(amax);
  const float s = fmaxf(amax, 1e-12f) / 448.0f;
  const __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(make_float2(v[0] / s, v[1] / s), __NV_SATFINITE, __NV_E4M3);
  const __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(make_float2(v[2] / s, v[3] / s), __NV_SATFINITE, __NV_E4M3);
  reinterpret_cast<uint32_t*>(p.q + r * p.inter + b * 128)[lane] = uint32_t(lo) | (uint32_t(hi) << 16);
  if (lane == 0) p.scale[b * p.rows + r] = s;
}

}  // namespace

cudaError_t launch_moe_prefill_group(const MoePrefillGroupParams& p, cudaStream_t stream) {
  if (p.experts <= 0 || p.experts > kMoePrefillMaxExperts) return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(p.counts, 0, size_t(p.experts) * 4, stream);
  if (e == cudaSuccess && p.max_rows > 0) e = cudaMemsetAsync(p.row_token, 0xff, size_t(p.max_rows) * 4, stream);
  if (e != cudaSuccess) return e;
  const unsigned grid = unsigned(ceil_div(p.pairs > 0 ? p.pairs : 1, 256));
  if (p.pairs > 0) prefill_count_kernel<<<grid, 256, 0, stream>>>(p);
  prefill_layout_kernel<<<1, kMoePrefillMaxExperts, 0, stream>>>(p);
  if (p.pairs > 0) prefill_scatter_kernel<<<grid, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_moe_silu_quant(const MoeSiluQuantParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.inter % 128 != 0) return cudaErrorInvalidValue;
  const int64_t threads = p.rows * (p.inter / 128) * 32;
  silu_quant_kernel<<<unsigned(ceil_div(threads, 256)), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
