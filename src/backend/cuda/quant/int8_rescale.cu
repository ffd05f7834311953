// Channel-INT8 product epilogue (see int8_rescale.h): one thread per 4 outputs of a token row.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "backend/cuda/quant/int8_rescale.h"

namespace dsserve::cuda {

namespace {

template <typename OutT>
__global__ void int8_rescale_kernel(const Int8RescaleParams p) {
  const int64_t t = blockIdx.y;
  const float xs = p.x_scale[t];
  const int32_t* d = p.d + t * p.ldd;
  OutT* y = static_cast<OutT*>(p.y) + t * p.ldy;
  const int64_t n0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t n = n0 + i;
    if (n >= p.N) break;
    const float v = float(d[n]) * (xs * p.w_scale[n]);
    if constexpr (std::is_same_v<OutT, float>) y[n] = v;
    else y[n] = __float2bfloat16_rn(v);
  }
}

}  // namespace

cudaError_t launch_int8_rescale(const Int8RescaleParams& p, cudaStream_t stream) {
  if (!p.d || !p.x_scale || !p.w_scale || !p.y || p.T < 0 || p.N < 0 || p.ldd < p.N || p.ldy < p.N ||
      (p.y_dtype != DType::BF16 && p.y_dtype != DType::F32))
    return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxRows = 65535;  // grid.y
  const size_t y_bytes = p.y_dtype == DType::F32 ? 4 : 2;
  for (int64_t t0 = 0; t0 < p.T && p.N > 0; t0 += kMaxRows) {
    Int8RescaleParams q = p;
    q.T = std::min(kMaxRows, p.T - t0);
    q.d += t0 * p.ldd;
    q.x_scale += t0;
    q.y = static_cast<char*>(p.y) + t0 * p.ldy * int64_t(y_bytes);
    const dim3 grid(unsigned((q.N + 4 * kThreads - 1) / (4 * kThreads)), unsigned(q.T));
    if (q.y_dtype == DType::F32) int8_rescale_kernel<float><<<grid, kThreads, 0, stream>>>(q);
    else int8_rescale_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(q);
  }
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
