// Embedding, RMSNorm and rotary-embedding kernels (see norm_rope.h). RMSNorm: one block per row,
// two passes over the row (the second hits L1/L2); embedding and RoPE: one thread per element.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/embedding_norm_rope/norm_rope.h"

namespace dsserve::cuda {

namespace {

template <typename TT, typename TO>
__global__ void embedding_kernel(EmbeddingParams p) {
  const int64_t t = blockIdx.x;
  const int32_t id = p.ids[t];
  const bool valid = id >= 0 && id < p.vocab;
  const TT* row = static_cast<const TT*>(p.table) + int64_t(valid ? id : 0) * p.hidden;
  TO* out = static_cast<TO*>(p.out) + t * p.hidden;
  for (int64_t c = threadIdx.x; c < p.hidden; c += blockDim.x) out[c] = from_f<TO>(valid ? to_f(row[c]) : 0.0f);
}

template <typename TX, typename TR, typename TO, bool kResidual>
__global__ void rms_norm_kernel(RmsNormParams p) {
  const int64_t row = blockIdx.x;
  const TX* x = static_cast<const TX*>(p.x) + row * p.x_stride;
  TR* res = kResidual ? static_cast<TR*>(p.residual) + row * p.res_stride : nullptr;
  TO* out = static_cast<TO*>(p.out) + row * p.cols;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) {
    float v = to_f(x[i]);
    if constexpr (kResidual) {
      TR r = from_f<TR>(to_f(res[i]) + v);
      res[i] = r;
      v = to_f(r);
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / float(p.cols) + p.eps);
  for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) {
    float v = kResidual ? to_f(res[i]) : to_f(x[i]);  // each thread re-reads only what it wrote
    out[i] = from_f<TO>(p.weight[i] * (v * inv));
  }
}

template <typename T>
__global__ void rope_kernel(RopeParams p) {
  const int64_t half = p.dim / 2;
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.tokens * p.heads * half) return;
  int64_t i = idx % half, h = (idx / half) % p.heads, t = idx / (half * p.heads);
  int32_t pos = p.positions[t];
  if (pos < 0 || pos >= p.table_positions) return;  // the model validates positions on the host
  const float* cs = p.table + int64_t(pos) * p.dim + 2 * i;
  T* v = static_cast<T*>(p.x) + t * p.stride_t + h * p.stride_h + 2 * i;
  float a = to_f(v[0]), b = to_f(v[1]), c = cs[0], s = cs[1];
  if (p.out) {
    bf16* o = static_cast<bf16*>(p.out) + t * p.out_stride_t + h * p.out_stride_h + 2 * i;
    o[0] = from_f<bf16>(to_f(from_f<T>(a * c - b * s)));
    o[1] = from_f<bf16>(to_f(from_f<T>(a * s + b * c)));
    return;
  }
  v[0] = from_f<T>(a * c - b * s);
  v[1] = from_f<T>(a * s + b * c);
}

int norm_threads(int64_t cols) {
  if (cols >= 2048) return 512;
  if (cols >= 512) return 256;
  return 128;
}

}  // namespace

cudaError_t launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.hidden == 0) return cudaSuccess;
  DS_DISPATCH_FLOAT(p.table_dtype, TT, DS_DISPATCH_FLOAT(p.out_dtype, TO,
      embedding_kernel<TT, TO><<<unsigned(p.tokens), 256, 0, stream>>>(p)));
  return cudaGetLastError();
}

cudaError_t launch_rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.out_dtype != DType::BF16 && p.out_dtype != DType::F32) return cudaErrorInvalidValue;
  const int threads = norm_threads(p.cols);
  const dim3 grid(unsigned(p.rows));
  if (p.residual) {
    DS_DISPATCH_FLOAT(p.x_dtype, TX, DS_DISPATCH_FLOAT(p.res_dtype, TR, DS_DISPATCH_FLOAT(p.out_dtype, TO,
        rms_norm_kernel<TX, TR, TO, true><<<grid, threads, 0, stream>>>(p))));
  } else {
    DS_DISPATCH_FLOAT(p.x_dtype, TX, DS_DISPATCH_FLOAT(p.out_dtype, TO,
        rms_norm_kernel<TX, float, TO, false><<<grid, threads, 0, stream>>>(p)));
  }
  return cudaGetLastError();
}

cudaError_t launch_rope(const RopeParams& p, cudaStream_t stream) {
  int64_t n = p.tokens * p.heads * (p.dim / 2);
  if (n == 0) return cudaSuccess;
  if (p.dim % 2 != 0) return cudaErrorInvalidValue;
  DS_DISPATCH_FLOAT(p.dtype, T, rope_kernel<T><<<unsigned(ceil_div(n, 256)), 256, 0, stream>>>(p));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
