// Embedding lookup, RMSNorm (plain and fused with the residual add) and interleaved rotary
// embedding for the CUDA backend. Plain params structs, shapes in the comments; launchers return
// the launch's cudaError_t.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

// out[t, :] = table[ids[t], :]; an id outside [0, vocab) gives a zero row.
struct EmbeddingParams {
  const int32_t* ids;  // [tokens]
  const void* table;   // [vocab, hidden] BF16 or F32, contiguous
  DType table_dtype;
  void* out;           // [tokens, hidden] contiguous
  DType out_dtype;
  int64_t tokens, vocab, hidden;
};
cudaError_t launch_embedding(const EmbeddingParams& p, cudaStream_t stream);

// With residual: residual += x (stored in the residual's dtype), out = rmsnorm(residual) * weight.
// Without: out = rmsnorm(x) * weight. Sums of squares in float32.
struct RmsNormParams {
  const void* x;        // [rows, cols], rows strided by x_stride
  DType x_dtype;
  int64_t x_stride;
  void* residual;       // [rows, cols], rows strided by res_stride; null for the plain norm
  DType res_dtype;
  int64_t res_stride;
  const float* weight;  // [cols]
  void* out;            // [rows, cols] contiguous
  DType out_dtype;
  int64_t rows, cols;
  float eps;
};
cudaError_t launch_rms_norm(const RmsNormParams& p, cudaStream_t stream);

// (x[2i], x[2i+1]) <- (a c - b s, a s + b c) with (c, s) = table[positions[t], 2i..2i+1]: in place,
// or written to out (BF16) when out is set (x then unchanged).
struct RopeParams {
  void* x;                  // [tokens, heads, dim], strided by (stride_t, stride_h, 1)
  DType dtype;
  int64_t stride_t, stride_h;
  const int32_t* positions; // [tokens]
  const float* table;       // [table_positions, dim]: interleaved (cos, sin) pairs
  int64_t tokens, heads, dim, table_positions;
  void* out = nullptr;      // [tokens, heads, dim] BF16, strided by (out_stride_t, out_stride_h, 1)
  int64_t out_stride_t = 0, out_stride_h = 0;
};
cudaError_t launch_rope(const RopeParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
