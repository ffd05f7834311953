// The epilogue of channel-INT8 products run as cuBLASLt int8 GEMMs (int32 results): each product
// times its token's activation scale and its output row's weight scale, written as BF16 or float32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct Int8RescaleParams {
  const int32_t* d = nullptr;        // [T, N] int32 products, rows ldd apart
  int64_t ldd = 0;
  const float* x_scale = nullptr;    // [T]: the tokens' activation scales
  const float* w_scale = nullptr;    // [N]: the output rows' weight scales
  void* y = nullptr;                 // [T, N] BF16 or F32, rows ldy apart
  DType y_dtype = DType::BF16;
  int64_t ldy = 0;
  int64_t T = 0, N = 0;
};

cudaError_t launch_int8_rescale(const Int8RescaleParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
