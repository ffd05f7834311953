// Device-side random fill of a weight tensor (--load-format dummy on the GPU): element i gets
// offset + scale * N(0, 1) or offset + scale * U[0, 1) from a counter-based hash of (seed, i), so
// the values depend on neither the launch configuration nor the order tensors are filled in.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct RandomFillParams {
  void* dst = nullptr;       // [n] of dtype, contiguous
  DType dtype = DType::F32;  // F32, BF16, F16, F8_E4M3 (rounded to nearest, e4m3 saturating at +-448), I8
                             // (nearest integer, saturating at +-127) or I32 (32 random bits each)
  int64_t n = 0;
  uint64_t seed = 0;
  bool normal = true;
  float scale = 1.0f, offset = 0.0f;
};

cudaError_t launch_random_fill(const RandomFillParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
