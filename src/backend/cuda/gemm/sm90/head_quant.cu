// Per-head activation quantization (see head_quant.h): one warp per (token, head, 128 columns),
// four values per lane, the block's absolute maximum by a warp reduction. Memory-bound.
#include <cuda_fp8.h>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/gemm/sm90/head_quant.h"

namespace dsserve::cuda {

namespace {

template <typename T>
__global__ void head_quant_kernel(HeadQuantParams p) {
  const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t blocks = p.in / 128;
  if (warp_id >= p.T * p.heads * blocks) return;
  const int64_t b = warp_id % blocks, th = warp_id / blocks, h = th % p.heads, t = th / p.heads;
  const T* x = static_cast<const T*>(p.x) + t * p.stride_t + h * p.stride_h + b * 128 + lane * 4;
  float v[4], amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v[j] = to_f(x[j]);
    amax = fmaxf(amax, fabsf(v[j]));
  }
  amax = warp_max(amax);
  const float s = fmaxf(amax, 1e-12f) / 448.0f;
  const __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(make_float2(v[0] / s, v[1] / s), __NV_SATFINITE, __NV_E4M3);
  const __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(make_float2(v[2] / s, v[3] / s), __NV_SATFINITE, __NV_E4M3);
  reinterpret_cast<uint32_t*>(p.q + (h * p.T + t) * p.in + b * 128)[lane] = uint32_t(lo) | (uint32_t(hi) << 16);
  if (lane == 0) p.scale[(h * blocks + b) * p.ld + t] = s;
}

}  // namespace

cudaError_t launch_head_quant(const HeadQuantParams& p, cudaStream_t stream) {
  if (p.T == 0 || p.heads == 0) return cudaSuccess;
  if (p.in % 128 != 0 || p.ld < p.T) return cudaErrorInvalidValue;
  const int64_t threads = p.T * p.heads * (p.in / 128) * 32;
  DS_DISPATCH_FLOAT(p.x_dtype, T, head_quant_kernel<T><<<unsigned(ceil_div(threads, 256)), 256, 0, stream>>>(p));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
