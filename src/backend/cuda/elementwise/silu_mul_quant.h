// SiLU-and-mul fused with the per-token-per-128 e4m3 quantization of its output: the down
// projection's W8A8 input in one pass over gate_up, with the BF16 rows written too when asked.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

// a[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i] rounded to BF16 (as silu_mul writes it),
// then q = e4m3(a / s) with s = amax / 448 over each 128 columns of a row (gemm/fp8_quant.cu).
struct SiluMulQuantParams {
  const void* gate_up;  // [rows, 2 * inter] F32 or BF16, rows strided by in_stride elements
  DType in_dtype;
  int64_t in_stride;
  void* out;            // [rows, inter] BF16 contiguous, or null
  uint8_t* q;           // [q_rows, inter] e4m3 contiguous (rows past `rows`: zeros)
  float* scale;         // [inter / 128, q_rows] F32, token contiguous (rows past `rows`: 1)
  int64_t rows, q_rows, inter;  // inter % 128 == 0, q_rows >= rows
};
cudaError_t launch_silu_mul_quant(const SiluMulQuantParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
