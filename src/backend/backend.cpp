// Backend selection: --device auto|cpu|cuda (auto = cuda when a GPU is visible and the CUDA backend
// is built in).
#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

#ifdef DSSERVE_HAVE_CUDA
#include "backend/cuda/cuda_device.h"
#endif

namespace dsserve {

void Backend::move_cache_slots(Tensor&, const Tensor&, const Tensor&) {
  fail("the {} backend cannot move cache slots (needed by speculative tree drafting, --speculative-eagle-topk > 1)",
       name());
}

DeviceKind parse_device_kind(const std::string& s) {
  if (s == "auto") return DeviceKind::Auto;
  if (s == "cpu") return DeviceKind::Cpu;
  if (s == "cuda") return DeviceKind::Cuda;
  fail("--device: expected auto, cpu or cuda, found '{}'", s);
}

int cuda_device_count() {
#ifdef DSSERVE_HAVE_CUDA
  return cuda_visible_devices();
#else
  return 0;
#endif
}

std::unique_ptr<Backend> create_backend(DeviceKind kind, int device_index) {
  if (kind == DeviceKind::Auto) {
    bool cuda_ready = false;
#ifdef DSSERVE_HAVE_CUDA
    cuda_ready = cuda_backend_complete();
#endif
    kind = cuda_ready && cuda_device_count() > 0 ? DeviceKind::Cuda : DeviceKind::Cpu;
  }
  if (kind == DeviceKind::Cpu) return std::make_unique<CpuBackend>();
#ifdef DSSERVE_HAVE_CUDA
  int n = cuda_device_count();
  DS_CHECK(n > 0, "--device cuda: no CUDA device is visible");
  DS_CHECK(device_index < n, "--device cuda: device {} requested, {} visible", device_index, n);
  return create_cuda_backend(device_index);
#else
  fail("--device cuda: this build of dsserve has no CUDA backend (nvcc was not found at build time)");
#endif
}

}  // namespace dsserve
