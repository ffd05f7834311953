// Per-head activation quantization for the FP8 per-head products of absorbed MLA: x [T, heads, in]
// (any row and head strides, unit column stride; BF16 or float32) becomes e4m3 [heads, T, in]
// (head-major: each head's rows are one A operand of the strided batch) with one float32 scale
// per (token, head, 128 columns), stored [heads][in / 128][ld] with the token index contiguous:
// the A-scale layout the sm90 GEMM reads per batch (= head).
// Scale s = max(|x|) / 448 (at least 1e-12 / 448), q = e4m3(x / s), as gemm/fp8_quant.h.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct HeadQuantParams {
  const void* x;  // [T, heads, in]: element (t, h, c) at x[t * stride_t + h * stride_h + c]
  DType x_dtype;
  int64_t stride_t, stride_h;
  uint8_t* q;     // [heads, T, in] e4m3 contiguous
  float* scale;   // [heads][in / 128][ld]
  int64_t T, heads, in, ld;  // in % 128 == 0, ld >= T
};
cudaError_t launch_head_quant(const HeadQuantParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
