// CUDA error reporting (see cuda_check.h).
#include "backend/cuda/cuda_check.h"

#include "core/error.h"

namespace dsserve::cuda {

void cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  fail("CUDA error in {}: {} ({})", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

}  // namespace dsserve::cuda
