// CUDA backend: the kernel set (backend/kernel_set.h) applied to the backend, and forced. What the
// sets change elsewhere asks CudaBackend::hopper_kernels(): the attention kernels (Mma where Sm90
// was asked for, the mma decode kernel's sm_80 configurations, no programmatic launches), FP8
// linears and routed experts (W8A16: cuda_ops_w8a16.cpp, the decode kernel without clusters),
// weight preparation (FP8 kept without asking cuBLASLt for its block-scaled products), and no sm90
// GEMM or FP8 per-head products.
#include <spdlog/spdlog.h>

#include <mutex>

#include "backend/cuda/cuda_backend.h"
#include "core/error.h"

namespace dsserve::cuda {

void CudaBackend::apply_kernel_set(KernelSet s, const std::string& device_name, bool forced) {
  kernel_set_ = s;
  if (s == KernelSet::Sm80) {
    set_sm90_fp8_gemm(false);
    set_fused_decode(false);
  }
  // One line per process and set (tensor-parallel ranks make one backend each).
  static std::mutex mu;
  static bool logged[2] = {false, false};
  std::lock_guard<std::mutex> lock(mu);
  if (logged[int(s)]) return;
  logged[int(s)] = true;
  spdlog::info("CUDA kernel set {} on {} (compute capability {}.{}{}): {}", kernel_set_name(s), device_name,
               compute_capability_ / 10, compute_capability_ % 10, forced ? ", forced" : "", kernel_set_summary(s));
}

void CudaBackend::force_sm80_kernels() {
  DS_CHECK(kernel_set_runs_on(KernelSet::Sm80, compute_capability_),
           "the sm80 kernel set cannot run on compute capability {}.{}", compute_capability_ / 10,
           compute_capability_ % 10);
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  apply_kernel_set(KernelSet::Sm80, prop.name, kernel_set_ != KernelSet::Sm80);
}

}  // namespace dsserve::cuda
