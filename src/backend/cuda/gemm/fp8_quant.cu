// Activation FP8 quantization kernel (see fp8_quant.h): one warp per (row, 128-column block),
// four values per lane, the block's absolute maximum by a warp reduction. Memory-bound.
#include <cuda_fp8.h>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/gemm/fp8_quant.h"

namespace dsserve::cuda {

namespace {

template <typename T>
__global__ void fp8_quant_kernel(Fp8QuantParams p) {
  const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t blocks = p.K / 128;
  if (warp_id >= p.rows * blocks) return;
  const int64_t r = warp_id / blocks, b = warp_id % blocks;
  const int64_t src = p.row_index ? p.row_index[r] : r;
  const bool valid = src >= 0 && src < p.src_rows;
  float v[4];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v[j] = valid ? to_f(static_cast<const T*>(p.x)[src * p.x_stride + b * 128 + lane * 4 + j]) : 0.0f;
    amax = fmaxf(amax, fabsf(v[j]));
  }
  amax = warp_max(amax);
  const float s = valid ? fmaxf(amax, 1e-12f) / 448.0f : 1.0f;
  __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(make_float2(v[0] / s, v[1] / s), __NV_SATFINITE, __NV_E4M3);
  __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(make_float2(v[2] / s, v[3] / s), __NV_SATFINITE, __NV_E4M3);
  uint32_t packed = uint32_t(lo) | (uint32_t(hi) << 16);
  reinterpret_cast<uint32_t*>(p.q + r * p.K + b * 128)[lane] = packed;
  if (lane == 0) {
    if (p.seg_start) {
      const int64_t s0 = p.seg_start[r], n = p.seg_rows[r];
      p.scale[s0 * blocks + b * n + (r - s0)] = s;
    } else {
      p.scale[b * p.rows + r] = s;
    }
  }
}

}  // namespace

cudaError_t launch_fp8_quant(const Fp8QuantParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.K % 128 != 0) return cudaErrorInvalidValue;
  const int64_t threads = p.rows * (p.K / 128) * 32;
  DS_DISPATCH_FLOAT(p.x_dtype, T, fp8_quant_kernel<T><<<unsigned(ceil_div(threads, 256)), 256, 0, stream>>>(p));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
