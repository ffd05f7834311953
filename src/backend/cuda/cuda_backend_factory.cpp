// The CUDA backend's factory (see cuda_device.h).
#include "backend/backend.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace dsserve {

bool cuda_backend_complete() { return false; }

std::unique_ptr<Backend> create_cuda_backend(int device_index) {
  fail("--device cuda: the CUDA backend's ops are not implemented yet; use --device cpu");
}

}  // namespace dsserve
