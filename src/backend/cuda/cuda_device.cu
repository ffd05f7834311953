// CUDA device discovery (see cuda_device.h).
#include <cuda_runtime.h>

#include "backend/cuda/cuda_device.h"

namespace dsserve {

int cuda_visible_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" / "no device" error
    return 0;
  }
  return n;
}

}  // namespace dsserve
