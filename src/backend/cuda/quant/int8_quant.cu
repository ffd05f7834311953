// Dynamic INT8 activation quantization (see int8_quant.h): a warp reads its row (or its 128-wide
// block of the row) once for the absolute maximum and once more to write the int8 values.
#include <cuda_bf16.h>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/quant/int8_quant.h"

namespace dsserve::cuda {

namespace {

template <typename T>
__device__ __forceinline__ float load_f(const T* p, int64_t i) {
  return to_f(p[i]);
}

__device__ __forceinline__ int8_t to_int8(float v, float inv) {
  return int8_t(max(-127, min(127, __float2int_rn(v * inv))));
}

// One warp per (row, block) with span = 128 (per_block), or per row with span = K.
template <typename T>
__global__ void int8_quant_kernel(const Int8QuantParams p, int64_t span, int64_t blocks_per_row) {
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (item >= p.rows * blocks_per_row) return;
  const int64_t r = item / blocks_per_row, b = item % blocks_per_row;
  const int64_t k0 = b * span, k1 = min(p.K, k0 + span);
  const int64_t src = p.row_index ? p.row_index[r] : r;
  const T* x = static_cast<const T*>(p.x) + (src >= 0 ? src : 0) * p.x_stride;
  float amax = 0.0f;
  if (src >= 0)
    for (int64_t k = k0 + lane; k < k1; k += 32) amax = fmaxf(amax, fabsf(load_f(x, k)));
  amax = warp_max(amax);
  const float scale = amax > 0.0f ? amax / 127.0f : 1.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  int8_t* q = p.q + r * p.ldq;
  for (int64_t k = k0 + lane; k < k1; k += 32) q[k] = src >= 0 ? to_int8(load_f(x, k), inv) : int8_t(0);
  if (lane == 0) p.scale[p.per_block ? r * p.scale_ld + b : r] = scale;
}

}  // namespace

cudaError_t launch_int8_quant(const Int8QuantParams& p, cudaStream_t stream) {
  if (!p.x || !p.q || !p.scale || p.K <= 0 || p.K % 16 != 0 || p.ldq < p.K || p.ldq % 16 != 0 || p.rows < 0 ||
      (p.per_block && p.scale_ld < (p.K + 127) / 128))
    return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  const int64_t span = p.per_block ? 128 : p.K, blocks_per_row = p.per_block ? (p.K + 127) / 128 : 1;
  const int64_t items = p.rows * blocks_per_row, warps_per_block = 8;
  const dim3 grid(unsigned(ceil_div(items, warps_per_block)));
  DS_DISPATCH_FLOAT(p.x_dtype, T,
                    int8_quant_kernel<T><<<grid, unsigned(32 * warps_per_block), 0, stream>>>(p, span, blocks_per_row));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
