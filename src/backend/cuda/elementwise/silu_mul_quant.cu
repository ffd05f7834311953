// SiLU-and-mul + e4m3 quantization (see silu_mul_quant.h): one warp per (row, 128 columns), four
// columns per lane, the block's absolute maximum by a warp reduction. Memory-bound.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/elementwise/silu_mul_quant.h"
#include "backend/cuda/common/mma_sync.cuh"
#include "backend/cuda/gemm/fp8_mma.cuh"

namespace dsserve::cuda {

namespace {

template <typename T>
__global__ void silu_mul_quant_kernel(SiluMulQuantParams p) {
  const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t blocks = p.inter / 128;
  if (warp_id >= p.q_rows * blocks) return;
  const int64_t r = warp_id / blocks, b = warp_id % blocks, c = b * 128 + lane * 4;
  const bool real = r < p.rows;
  float a[4];
  float amax = 0.0f;
  if (real) {
    const T* gu = static_cast<const T*>(p.gate_up) + r * p.in_stride;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float g = to_f(gu[c + j]), u = to_f(gu[p.inter + c + j]);
      a[j] = __bfloat162float(__float2bfloat16_rn(g / (1.0f + __expf(-g)) * u));
      amax = fmaxf(amax, fabsf(a[j]));
    }
    if (p.out) {
      bf16* o = static_cast<bf16*>(p.out) + r * p.inter + c;
      *reinterpret_cast<uint2*>(o) = make_uint2(pack_bf16(a[0], a[1]), pack_bf16(a[2], a[3]));
    }
  } else {
    a[0] = a[1] = a[2] = a[3] = 0.0f;
  }
  amax = warp_max(amax);
  const float s = real ? fp8_block_scale(amax) : 1.0f;
  reinterpret_cast<uint32_t*>(p.q + r * p.inter + b * 128)[lane] = quant_e4m3x4(a[0], a[1], a[2], a[3], s);
  if (lane == 0) p.scale[b * p.q_rows + r] = s;
}

}  // namespace

cudaError_t launch_silu_mul_quant(const SiluMulQuantParams& p, cudaStream_t stream) {
  if (p.q_rows == 0) return cudaSuccess;
  if (p.inter % 128 != 0 || p.q_rows < p.rows || !p.q || !p.scale) return cudaErrorInvalidValue;
  const int64_t threads = p.q_rows * (p.inter / 128) * 32;
  DS_DISPATCH_FLOAT(p.in_dtype, T,
                    silu_mul_quant_kernel<T><<<unsigned(ceil_div(threads, 256)), 256, 0, stream>>>(p));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
