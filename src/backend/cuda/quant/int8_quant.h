// Dynamic INT8 quantization of activations for the W8A8 products (quant_gemm.h): per row (channel
// INT8: one scale per token over all K) or per row and 128 columns (block INT8). scale = amax / 127,
// q = round-to-nearest-even(x / scale) clamped to [-127, 127]; an all-zero row or block gets scale 1
// and zeros. One warp per row (channel) or per (row, block); rows may be gathered.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct Int8QuantParams {
  const void* x = nullptr;              // [src_rows, K] F32 or BF16, rows x_stride elements apart
  DType x_dtype = DType::BF16;
  int64_t x_stride = 0;
  const int32_t* row_index = nullptr;   // optional: output row r reads source row row_index[r] (< 0: zeros)
  int8_t* q = nullptr;                  // [rows, ldq]
  int64_t ldq = 0;                      // a multiple of 16
  float* scale = nullptr;               // per_block: [rows, scale_ld]; else [rows]
  int64_t scale_ld = 0;                 // per_block: >= ceil(K / 128)
  int64_t rows = 0, K = 0;              // K % 16 == 0
  bool per_block = false;
};

cudaError_t launch_int8_quant(const Int8QuantParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
