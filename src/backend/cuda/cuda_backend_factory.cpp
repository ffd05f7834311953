// The CUDA backend's factory (see cuda_device.h).
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace dsserve {

// Every op of backend.h is implemented and checked against the CPU backend by tests/gpu.
bool cuda_backend_complete() { return true; }

void cuda_set_quantized_kernels(bool on) { cuda::CudaBackend::set_default_quantized_kernels(on); }

std::unique_ptr<Backend> create_cuda_backend(int device_index) {
  return std::make_unique<cuda::CudaBackend>(device_index);
}

}  // namespace dsserve
