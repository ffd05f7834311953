// Per-token, per-128-channel FP8 (e4m3) quantization of activations for the W8A8 block-scaled
// GEMM: for each row r and 128-column block b, s = max(|x|) / 448 (at least 1e-12 / 448) and
// q = e4m3(x / s), rounded to nearest, saturating. Scales are written with the row index
// contiguous, as cuBLASLt's VEC128_32F mode reads them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct Fp8QuantParams {
  const void* x;             // [src_rows, K], rows strided by x_stride (F32 or BF16)
  DType x_dtype;
  int64_t x_stride, src_rows;
  const int32_t* row_index;  // [rows] source row of each output row, or null (identity);
                             // outside [0, src_rows): a zero row (padding) with scale 1
  const int32_t* seg_start;  // [rows] or null: first row of the segment holding each row
  const int32_t* seg_rows;   // [rows] or null: rows of that segment
  uint8_t* q;                // [rows, K] e4m3 contiguous
  float* scale;              // null seg_*: [K / 128, rows]; else for a row r of segment (s0, n):
                             // scale[s0 * K / 128 + b * n + (r - s0)] (each segment its own [K/128, n])
  int64_t rows, K;           // K % 128 == 0
};
cudaError_t launch_fp8_quant(const Fp8QuantParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
