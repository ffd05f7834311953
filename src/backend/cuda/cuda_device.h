// CUDA device discovery and the CUDA backend's factory.
#pragma once
#include <memory>
#include <vector>

namespace dsserve {

class Backend;

// Number of visible CUDA devices; 0 when there is no driver or no device (never throws).
int cuda_visible_devices();
// The CUDA backend on one device; fails with a clear message when there is no usable GPU.
std::unique_ptr<Backend> create_cuda_backend(int device_index);
// Backends on devices 0..world-1 sharing one NCCL communicator (cuda_collective.cpp).
std::vector<std::unique_ptr<Backend>> create_cuda_group_backends(int world);
// Whether CUDA backends created from now on run AWQ / INT8 weights on the quantized kernels.
void cuda_set_quantized_kernels(bool on);

}  // namespace dsserve
