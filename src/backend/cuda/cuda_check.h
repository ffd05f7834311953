// Turns CUDA runtime errors into dsserve::Error exceptions naming the operation that failed.
#pragma once
#include <cuda_runtime.h>

namespace dsserve::cuda {

// Throws "CUDA error in <what>: <name> (<description>)" unless e is cudaSuccess.
void cuda_check(cudaError_t e, const char* what);

}  // namespace dsserve::cuda
