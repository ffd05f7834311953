// Elementwise and copy kernels of the CUDA backend: SiLU-and-multiply, in-place add, row copies
// (gather, concatenation, packing strided rows) and strided N-d copies with dtype conversion.
// Each takes one plain params struct; shapes of the fields in the comments. Launchers return the
// launch's cudaError_t; the caller turns it into an exception.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i].
struct SiluMulParams {
  const void* gate_up;   // [rows, 2 * inter], rows strided by in_stride elements
  DType in_dtype;        // F32 or BF16
  int64_t in_stride;
  void* out;             // [rows, inter] contiguous
  DType out_dtype;       // F32 or BF16
  int64_t rows, inter;
};
cudaError_t launch_silu_mul(const SiluMulParams& p, cudaStream_t stream);

// x[r, c] += y[r, c] (computed in float32, stored in x's dtype).
struct AddParams {
  void* x;        // [rows, cols], rows strided by x_stride
  DType x_dtype;
  int64_t x_stride;
  const void* y;  // [rows, cols], rows strided by y_stride
  DType y_dtype;
  int64_t y_stride;
  int64_t rows, cols;
};
cudaError_t launch_add_inplace(const AddParams& p, cudaStream_t stream);

// dst[r, c] = src[row_index ? row_index[r] : r, c]; a row index outside [0, src_rows) gives a
// zero row (used for padding rows).
struct CopyRowsParams {
  const void* src;           // [src_rows, cols], rows strided by src_stride
  DType src_dtype;           // F32, BF16 (converted) or any dtype equal to dst_dtype (copied)
  int64_t src_stride, src_rows;
  const int32_t* row_index;  // [rows] or null
  void* dst;                 // [rows, cols] at dst, rows strided by dst_stride
  DType dst_dtype;
  int64_t dst_stride;
  int64_t rows, cols;
};
cudaError_t launch_copy_rows(const CopyRowsParams& p, cudaStream_t stream);

// Contiguous copy of a strided tensor of up to 4 dims with dtype conversion (F32/BF16), or a
// plain copy for equal dtypes of 1, 2 or 4 bytes.
struct StridedCopyParams {
  const void* src;
  DType src_dtype;
  int ndim;
  int64_t sizes[4];    // [d0, d1, d2, d3] (first ndim used)
  int64_t strides[4];  // elements
  void* dst;           // [d0, ..., d(ndim-1)] contiguous
  DType dst_dtype;
};
cudaError_t launch_strided_copy(const StridedCopyParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
