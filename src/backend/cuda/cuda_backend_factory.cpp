// The CUDA backend's factory (see cuda_device.h).
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace dsserve {

void cuda_set_quantized_kernels(bool on) { cuda::CudaBackend::set_default_quantized_kernels(on); }

std::unique_ptr<Backend> create_cuda_backend(int device_index) {
  return std::make_unique<cuda::CudaBackend>(device_index);
}

}  // namespace dsserve
