// Backend selection for the whole process: --device auto|cpu|cuda resolved by one rule, and the
// backends of a layout (one device, a tensor-parallel group, data-parallel attention groups) on the
// CPU or on CUDA devices. Several nodes' backends are made after their rendezvous (parallel/
// node_group.h), from the device resolved here.
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

#ifdef DSSERVE_HAVE_CUDA
#include "backend/cuda/cuda_data_parallel.h"
#include "backend/cuda/cuda_device.h"
#endif

namespace dsserve {

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

void set_cuda_quantized_kernels(bool on) {
#ifdef DSSERVE_HAVE_CUDA
  cuda_set_quantized_kernels(on);
#else
  (void)on;
#endif
}

DeviceKind resolve_device(DeviceKind kind) {
  if (kind != DeviceKind::Auto) return kind;
  return cuda_device_count() > 0 ? DeviceKind::Cuda : DeviceKind::Cpu;
}

std::unique_ptr<Backend> create_backend(DeviceKind kind, int device_index) {
  kind = resolve_device(kind);
  if (kind == DeviceKind::Cpu) return std::make_unique<CpuBackend>();
#ifdef DSSERVE_HAVE_CUDA
  const int n = cuda_device_count();
  DS_CHECK(n > 0, "--device cuda: no CUDA device is visible");
  DS_CHECK(device_index < n, "--device cuda: device {} requested, {} visible", device_index, n);
  return create_cuda_backend(device_index);
#else
  (void)device_index;
  fail("--device cuda: this build of dsserve has no CUDA backend (nvcc was not found at build time)");
#endif
}

std::vector<std::unique_ptr<Backend>> create_backends(DeviceKind kind, BackendLayout layout) {
  const int world = layout.world, groups = layout.attention_groups;
  DS_CHECK(world >= 1, "--tp-size must be at least 1, found {}", world);
  DS_CHECK(groups >= 1 && world % groups == 0, "--dp-size {} must divide --tp-size {} with --enable-dp-attention",
           groups, world);
  kind = resolve_device(kind);
  std::vector<std::unique_ptr<Backend>> out;
  if (world == 1) {
    out.push_back(create_backend(kind));
    return out;
  }
  if (kind == DeviceKind::Cpu)
    return groups > 1 ? create_cpu_data_parallel_backends(world, groups) : create_cpu_group_backends(world);
#ifdef DSSERVE_HAVE_CUDA
  const int n = cuda_device_count();
  DS_CHECK(n >= world, "--tp-size {}{}: needs {} GPUs, {} visible", world,
           groups > 1 ? fmt::format(" with --dp-size {}", groups) : std::string(), world, n);
  return groups > 1 ? create_cuda_data_parallel_backends(world, groups) : create_cuda_group_backends(world);
#else
  fail("--tp-size {} on cuda: this build of dsserve has no CUDA backend", world);
#endif
}

}  // namespace dsserve
