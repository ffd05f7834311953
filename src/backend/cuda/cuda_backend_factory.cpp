// The CUDA backend's factory (see cuda_device.h).
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace dsserve {

std::unique_ptr<Backend> create_cuda_backend(int device_index) {
  return std::make_unique<cuda::CudaBackend>(device_index);
}

}  // namespace dsserve
