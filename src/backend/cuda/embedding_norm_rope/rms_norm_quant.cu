// RMSNorm with 16-byte accesses, fused residual add and e4m3 quantization (see rms_norm_quant.h).
// Thread i holds vectors i, i + blockDim, ... of 8 columns (kVpt of them) in registers, so the row
// is read once; the 16 threads of an aligned half-warp hold one 128-column block, whose absolute
// maximum is a 4-step shuffle. Output values are rounded to BF16 before they are quantized, so the
// quantized rows are those the unfused path (norm, then gemm/fp8_quant.cu) would produce.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/embedding_norm_rope/rms_norm_quant.h"
#include "backend/cuda/gemm/fp8_mma.cuh"

namespace dsserve::cuda {

namespace {

__device__ __forceinline__ void load8(const bf16* p, float (&v)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const bf16* b = reinterpret_cast<const bf16*>(&u);
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = __bfloat162float(b[j]);
}
__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
// Stores 8 values rounded to T; returns them as rounded.
__device__ __forceinline__ void store8(bf16* p, float (&v)[8]) {
  uint4 u;
  bf16* b = reinterpret_cast<bf16*>(&u);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    b[j] = __float2bfloat16_rn(v[j]);
    v[j] = __bfloat162float(b[j]);
  }
  *reinterpret_cast<uint4*>(p) = u;
}
__device__ __forceinline__ void store8(float* p, float (&v)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

template <typename TX, typename TR, bool kResidual, int kVpt>
__global__ void rms_norm_quant_kernel(RmsNormQuantParams p) {
  // The next kernel, when launched programmatically dependent (the W8A8 decode linear), may start
  // streaming its weights now; it waits for this grid's completion before it reads the rows.
  griddep_launch_dependents();
  const int64_t row = blockIdx.x, nvec = p.cols / 8;
  const int nthreads = int(blockDim.x), lane = threadIdx.x & 31;
  if (row >= p.rows) {  // a padding row of the quantized output
    for (int64_t v = threadIdx.x; v < nvec; v += nthreads) {
      *reinterpret_cast<uint2*>(p.q + row * p.cols + v * 8) = make_uint2(0, 0);
      if (v % 16 == 0) p.scale[(v / 16) * p.q_rows + row] = 1.0f;
    }
    return;
  }
  const TX* x = static_cast<const TX*>(p.x) + row * p.x_stride;
  TR* res = kResidual ? static_cast<TR*>(p.residual) + row * p.res_stride : nullptr;
  float v[kVpt][8];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < kVpt; ++k) {
    const int64_t vi = threadIdx.x + int64_t(k) * nthreads;
    if (vi < nvec) {
      load8(x + vi * 8, v[k]);
      if constexpr (kResidual) {
        float r[8];
        load8(res + vi * 8, r);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[k][j] += r[j];
        store8(res + vi * 8, v[k]);  // the residual's dtype; v[k] becomes the stored (rounded) sum
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += v[k][j] * v[k][j];
    }
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / float(p.cols) + p.eps);
  bf16* out = static_cast<bf16*>(p.out) + row * p.cols;
#pragma unroll
  for (int k = 0; k < kVpt; ++k) {
    const int64_t vi = threadIdx.x + int64_t(k) * nthreads;
    const bool ok = vi < nvec;
    float o[8];
    float amax = 0.0f;
    if (ok) {
      float w[8];
      load8(p.weight + vi * 8, w);
#pragma unroll
      for (int j = 0; j < 8; ++j) o[j] = w[j] * (v[k][j] * inv);
      store8(out + vi * 8, o);  // o becomes the BF16-rounded output
#pragma unroll
      for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(o[j]));
    }
    if (p.q) {  // uniform over the block
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
      if (ok) {
        const float s = fp8_block_scale(amax);
        *reinterpret_cast<uint2*>(p.q + row * p.cols + vi * 8) =
            make_uint2(quant_e4m3x4(o[0], o[1], o[2], o[3], s), quant_e4m3x4(o[4], o[5], o[6], o[7], s));
        if ((lane & 15) == 0) p.scale[(vi / 16) * p.q_rows + row] = s;
      }
    }
  }
}

template <typename TX, typename TR, bool kResidual>
cudaError_t launch_vpt(const RmsNormQuantParams& p, cudaStream_t stream) {
  const int64_t nvec = p.cols / 8;
  const int64_t grid = p.q ? p.q_rows : p.rows;
  auto threads = [&](int vpt) { return unsigned((ceil_div(nvec, vpt) + 31) / 32 * 32); };
  if (nvec <= 1024) {
    rms_norm_quant_kernel<TX, TR, kResidual, 1><<<unsigned(grid), threads(1), 0, stream>>>(p);
  } else if (nvec <= 2048) {
    rms_norm_quant_kernel<TX, TR, kResidual, 2><<<unsigned(grid), threads(2), 0, stream>>>(p);
  } else {
    rms_norm_quant_kernel<TX, TR, kResidual, 4><<<unsigned(grid), threads(4), 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

bool rms_norm_quant_supported(const RmsNormQuantParams& p) {
  auto aligned16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  const size_t xe = p.x_dtype == DType::F32 ? 4 : 2, re = p.res_dtype == DType::F32 ? 4 : 2;
  return (p.x_dtype == DType::BF16 || p.x_dtype == DType::F32) && p.cols >= 8 && p.cols % 8 == 0 &&
         p.cols <= 32768 && aligned16(p.x) && (p.x_stride * int64_t(xe)) % 16 == 0 && aligned16(p.out) &&
         aligned16(p.weight) &&
         (!p.residual || ((p.res_dtype == DType::BF16 || p.res_dtype == DType::F32) && aligned16(p.residual) &&
                          (p.res_stride * int64_t(re)) % 16 == 0)) &&
         (!p.q || (p.cols % 128 == 0 && p.scale && p.q_rows >= p.rows && reinterpret_cast<uintptr_t>(p.q) % 8 == 0));
}

cudaError_t launch_rms_norm_quant(const RmsNormQuantParams& p, cudaStream_t stream) {
  if (!rms_norm_quant_supported(p)) return cudaErrorInvalidValue;
  if ((p.q ? p.q_rows : p.rows) == 0) return cudaSuccess;
  if (p.residual) {
    DS_DISPATCH_FLOAT(p.x_dtype, TX, DS_DISPATCH_FLOAT(p.res_dtype, TR, return launch_vpt<TX, TR, true>(p, stream)));
  } else {
    DS_DISPATCH_FLOAT(p.x_dtype, TX, return launch_vpt<TX, float, false>(p, stream));
  }
  return cudaSuccess;
}

}  // namespace dsserve::cuda
