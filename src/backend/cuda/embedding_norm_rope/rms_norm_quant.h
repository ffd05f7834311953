// RMSNorm (plain, or fused with the residual add) with 16-byte accesses and the row in registers,
// optionally fused with the per-token-per-128 e4m3 quantization of its output for the W8A8 linears
// that read it. One block per row; rows past `rows` (up to q_rows) are the padding rows of the
// quantized output (zeros, scale 1) that token-padded FP8 products read.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct RmsNormQuantParams {
  const void* x;        // [rows, cols] F32 or BF16, rows strided by x_stride elements
  DType x_dtype;
  int64_t x_stride;
  void* residual;       // [rows, cols] F32 or BF16, rows strided by res_stride; null for the plain norm
  DType res_dtype;
  int64_t res_stride;
  const float* weight;  // [cols]
  void* out;            // [rows, cols] BF16 contiguous: weight * x / rms (the residual sum when fused)
  int64_t rows, cols;
  float eps;
  // Quantized output, or null: q [q_rows, cols] e4m3 contiguous, scale [cols / 128, q_rows] F32
  // (token contiguous), q_rows >= rows.
  uint8_t* q;
  float* scale;
  int64_t q_rows;
};

// Whether launch_rms_norm_quant takes these parameters: cols % 8 == 0 (cols % 128 == 0 with q),
// 16-byte aligned rows, at most 32768 columns.
bool rms_norm_quant_supported(const RmsNormQuantParams& p);
cudaError_t launch_rms_norm_quant(const RmsNormQuantParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
