// Elementwise and copy kernels (see elementwise.h). All are memory-bound one-pass kernels: one
// thread per element, consecutive threads on consecutive columns, so every access is coalesced.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/elementwise/elementwise.h"

namespace dsserve::cuda {

namespace {

constexpr int kThreads = 256;

dim3 grid_for(int64_t n) { return dim3(unsigned(ceil_div(n, kThreads))); }

template <typename TI, typename TO>
__global__ void silu_mul_kernel(SiluMulParams p) {
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.rows * p.inter) return;
  int64_t r = idx / p.inter, i = idx % p.inter;
  const TI* g = static_cast<const TI*>(p.gate_up) + r * p.in_stride;
  float a = to_f(g[i]), b = to_f(g[p.inter + i]);
  static_cast<TO*>(p.out)[idx] = from_f<TO>(a / (1.0f + __expf(-a)) * b);
}

template <typename TX, typename TY>
__global__ void add_kernel(AddParams p) {
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.rows * p.cols) return;
  int64_t r = idx / p.cols, c = idx % p.cols;
  TX* x = static_cast<TX*>(p.x) + r * p.x_stride + c;
  const TY* y = static_cast<const TY*>(p.y) + r * p.y_stride + c;
  *x = from_f<TX>(to_f(*x) + to_f(*y));
}

template <typename TS, typename TD>
__global__ void copy_rows_convert_kernel(CopyRowsParams p) {
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.rows * p.cols) return;
  int64_t r = idx / p.cols, c = idx % p.cols;
  int64_t s = p.row_index ? p.row_index[r] : r;
  float v = (s >= 0 && s < p.src_rows) ? to_f(static_cast<const TS*>(p.src)[s * p.src_stride + c]) : 0.0f;
  static_cast<TD*>(p.dst)[r * p.dst_stride + c] = from_f<TD>(v);
}

template <typename T>  // raw copy of equal dtypes
__global__ void copy_rows_raw_kernel(CopyRowsParams p) {
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.rows * p.cols) return;
  int64_t r = idx / p.cols, c = idx % p.cols;
  int64_t s = p.row_index ? p.row_index[r] : r;
  T v = (s >= 0 && s < p.src_rows) ? static_cast<const T*>(p.src)[s * p.src_stride + c] : T(0);
  static_cast<T*>(p.dst)[r * p.dst_stride + c] = v;
}

__device__ __forceinline__ int64_t strided_offset(const StridedCopyParams& p, int64_t idx) {
  int64_t off = 0;
  for (int d = p.ndim - 1; d >= 0; --d) {
    int64_t i = idx % p.sizes[d];
    idx /= p.sizes[d];
    off += i * p.strides[d];
  }
  return off;
}

template <typename TS, typename TD>
__global__ void strided_convert_kernel(StridedCopyParams p, int64_t n) {
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  static_cast<TD*>(p.dst)[idx] = from_f<TD>(to_f(static_cast<const TS*>(p.src)[strided_offset(p, idx)]));
}

template <typename T>
__global__ void strided_raw_kernel(StridedCopyParams p, int64_t n) {
  int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  static_cast<T*>(p.dst)[idx] = static_cast<const T*>(p.src)[strided_offset(p, idx)];
}

bool is_float(DType t) { return t == DType::F32 || t == DType::BF16; }

}  // namespace

cudaError_t launch_silu_mul(const SiluMulParams& p, cudaStream_t stream) {
  int64_t n = p.rows * p.inter;
  if (n == 0) return cudaSuccess;
  DS_DISPATCH_FLOAT(p.in_dtype, TI,
                    DS_DISPATCH_FLOAT(p.out_dtype, TO, silu_mul_kernel<TI, TO><<<grid_for(n), kThreads, 0, stream>>>(p)));
  return cudaGetLastError();
}

cudaError_t launch_add_inplace(const AddParams& p, cudaStream_t stream) {
  int64_t n = p.rows * p.cols;
  if (n == 0) return cudaSuccess;
  DS_DISPATCH_FLOAT(p.x_dtype, TX,
                    DS_DISPATCH_FLOAT(p.y_dtype, TY, add_kernel<TX, TY><<<grid_for(n), kThreads, 0, stream>>>(p)));
  return cudaGetLastError();
}

cudaError_t launch_copy_rows(const CopyRowsParams& p, cudaStream_t stream) {
  int64_t n = p.rows * p.cols;
  if (n == 0) return cudaSuccess;
  if (is_float(p.src_dtype) && is_float(p.dst_dtype)) {
    DS_DISPATCH_FLOAT(p.src_dtype, TS,
                      DS_DISPATCH_FLOAT(p.dst_dtype, TD,
                                        copy_rows_convert_kernel<TS, TD><<<grid_for(n), kThreads, 0, stream>>>(p)));
  } else if (p.src_dtype == p.dst_dtype) {
    switch (dtype_size(p.src_dtype)) {
      case 1: copy_rows_raw_kernel<uint8_t><<<grid_for(n), kThreads, 0, stream>>>(p); break;
      case 2: copy_rows_raw_kernel<uint16_t><<<grid_for(n), kThreads, 0, stream>>>(p); break;
      case 4: copy_rows_raw_kernel<uint32_t><<<grid_for(n), kThreads, 0, stream>>>(p); break;
      case 8: copy_rows_raw_kernel<uint64_t><<<grid_for(n), kThreads, 0, stream>>>(p); break;
      default: return cudaErrorInvalidValue;
    }
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_strided_copy(const StridedCopyParams& p, cudaStream_t stream) {
  int64_t n = 1;
  for (int d = 0; d < p.ndim; ++d) n *= p.sizes[d];
  if (n == 0) return cudaSuccess;
  if (is_float(p.src_dtype) && is_float(p.dst_dtype)) {
    DS_DISPATCH_FLOAT(p.src_dtype, TS,
                      DS_DISPATCH_FLOAT(p.dst_dtype, TD,
                                        strided_convert_kernel<TS, TD><<<grid_for(n), kThreads, 0, stream>>>(p, n)));
  } else if (p.src_dtype == p.dst_dtype) {
    switch (dtype_size(p.src_dtype)) {
      case 1: strided_raw_kernel<uint8_t><<<grid_for(n), kThreads, 0, stream>>>(p, n); break;
      case 2: strided_raw_kernel<uint16_t><<<grid_for(n), kThreads, 0, stream>>>(p, n); break;
      case 4: strided_raw_kernel<uint32_t><<<grid_for(n), kThreads, 0, stream>>>(p, n); break;
      case 8: strided_raw_kernel<uint64_t><<<grid_for(n), kThreads, 0, stream>>>(p, n); break;
      default: return cudaErrorInvalidValue;
    }
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
