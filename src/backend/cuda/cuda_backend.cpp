// CUDA backend: construction, device memory, host transfers and the scratch memory of the ops.
#include "backend/cuda/cuda_backend.h"

#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise/elementwise.h"
#include "backend/cuda/random/random_fill.h"
#include "backend/weight_dequant.h"
#include "core/error.h"

namespace dsserve::cuda {

bool CudaLinear::any_fp8() const {
  for (const auto& s : segments)
    if (s.fp8) return true;
  return false;
}

CudaBackend::CudaBackend(int device_index) : device_(device_index) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    fail("--device cuda: no CUDA device is visible (no driver or no GPU)");
  }
  DS_CHECK(device_index >= 0 && device_index < n, "--device cuda: device {} requested, {} visible", device_index, n);
  check(cudaSetDevice(device_), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  compute_capability_ = 10 * prop.major + prop.minor;
  std::string why;
  const std::optional<KernelSet> set = kernel_set_for(compute_capability_, &why);
  DS_CHECK(set.has_value(), "--device cuda: {} has {}", prop.name, why);
  check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  gemm_ = std::make_unique<LtGemm>(stream_);
  experts_run_device_ = alloc(DType::I64, {1});
  router_ticket_ = alloc(DType::I32, {1});
  apply_kernel_set(*set, prop.name, false);
}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (cudaEvent_t ev : layer_events_) cudaEventDestroy(ev);
  gemm_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::check(cudaError_t e, const char* what) { cuda_check(e, what); }

Tensor CudaBackend::alloc(DType dtype, Shape shape) {
  size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 256));
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("out of GPU memory allocating {} MiB for a {} tensor {}", bytes >> 20, dtype_name(dtype), shape.str());
  }
  *live_bytes_ += int64_t(bytes);
  std::shared_ptr<void> storage(p, [live = live_bytes_, bytes](void* q) {
    cudaFree(q);
    *live -= int64_t(bytes);
  });
  check(cudaMemsetAsync(p, 0, bytes, stream_), "cudaMemsetAsync (alloc)");
  return Tensor(p, dtype, shape, Device::CUDA, storage);
}

Tensor CudaBackend::upload_bytes(const void* host, DType dtype, Shape shape) {
  Tensor t = alloc(dtype, shape);
  if (t.nbytes()) check(cudaMemcpyAsync(t.data(), host, t.nbytes(), cudaMemcpyHostToDevice, stream_), "upload");
  check(cudaStreamSynchronize(stream_), "upload (synchronize)");
  return t;
}

Tensor CudaBackend::to_device(const Tensor& host) {
  if (host.device() == Device::CUDA) {  // a persistent device copy
    Tensor tmp = as_dtype(host, host.dtype(), false);
    Tensor out = alloc(host.dtype(), host.shape());
    check(cudaMemcpyAsync(out.data(), tmp.data(), out.nbytes(), cudaMemcpyDeviceToDevice, stream_), "to_device");
    return out;
  }
  if (host.is_contiguous()) return upload_bytes(host.data(), host.dtype(), host.shape());
  Tensor c = host_to_f32(host);
  return upload_bytes(c.data(), DType::F32, c.shape());
}

Tensor CudaBackend::to_host_f32(const Tensor& t) {
  const bool integer = t.dtype() == DType::I32 || t.dtype() == DType::I64 || t.dtype() == DType::U8 ||
                       t.dtype() == DType::I8 || t.dtype() == DType::BOOL;
  if (t.device() == Device::CPU) {
    if (!integer) return host_to_f32(t);
    DS_CHECK(t.is_contiguous(), "to_host_f32: strided integer host tensor {}", t.shape().str());
    Tensor out = Tensor::zeros_host(t.dtype(), t.shape());
    std::memcpy(out.data(), t.data(), t.nbytes());
    return out;
  }
  if ((t.dtype() == DType::F8_E4M3 || t.dtype() == DType::F8_E5M2) && t.is_contiguous()) {  // an FP8 latent cache
    Tensor bytes = Tensor::zeros_host(t.dtype(), t.shape());
    if (bytes.nbytes())
      check(cudaMemcpyAsync(bytes.data(), t.data(), bytes.nbytes(), cudaMemcpyDeviceToHost, stream_), "to_host_f32");
    check(cudaStreamSynchronize(stream_), "to_host_f32 (synchronize: an earlier kernel may have failed)");
    return host_to_f32(bytes);
  }
  DType target = integer ? t.dtype() : DType::F32;
  DS_CHECK(integer || t.dtype() == DType::F32 || t.dtype() == DType::BF16,
           "to_host_f32: {} tensors are not readable as float", dtype_name(t.dtype()));
  Tensor dev = as_dtype(t, target, false);
  if (!dev.is_contiguous()) dev = contiguous(dev);
  Tensor out = Tensor::zeros_host(target, t.shape());
  if (out.nbytes())
    check(cudaMemcpyAsync(out.data(), dev.data(), out.nbytes(), cudaMemcpyDeviceToHost, stream_), "to_host_f32");
  check(cudaStreamSynchronize(stream_), "to_host_f32 (synchronize: an earlier kernel may have failed)");
  return out;
}

Tensor CudaBackend::host_copy(const Tensor& t) {
  DS_CHECK(t.device() == Device::CUDA, "host_copy: expected a device tensor");
  Tensor dev = t.is_contiguous() ? t : as_dtype(t, t.dtype(), false);
  if (!dev.is_contiguous()) dev = contiguous(dev);
  Tensor out = Tensor::zeros_host(t.dtype(), t.shape());
  if (out.nbytes())
    check(cudaMemcpyAsync(out.data(), dev.data(), out.nbytes(), cudaMemcpyDeviceToHost, stream_), "host_copy");
  check(cudaStreamSynchronize(stream_), "host_copy (synchronize)");
  return out;
}

WeightPart CudaBackend::on_host(const WeightPart& p) {
  WeightPart h = p;
  for (Tensor* t : {&h.weight, &h.scale, &h.zeros})
    if (t->defined() && t->device() == Device::CUDA) *t = host_copy(*t);
  return h;
}

Tensor CudaBackend::random_weight(DType dtype, Shape shape, const RandomFill& fill) {
  DS_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16 || dtype == DType::F8_E4M3 ||
               dtype == DType::I8 || dtype == DType::I32,
           "random_weight: {} tensors cannot be generated on the device", dtype_name(dtype));
  Tensor t = alloc(dtype, shape);
  RandomFillParams p;
  p.dst = t.data(), p.dtype = dtype, p.n = t.numel();
  p.seed = fill.seed, p.normal = fill.normal, p.scale = fill.scale, p.offset = fill.offset;
  check(launch_random_fill(p, stream_), "random_weight");
  return t;
}

DeviceMemory CudaBackend::memory() const {
  size_t free = 0, total = 0;
  cuda_check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return {int64_t(free), int64_t(total)};
}

void CudaBackend::begin_forward() {}

std::string CudaBackend::fatal_error() {
  // Launch errors are reported where they happen; an error a stream query returns is a fault of
  // an executed kernel, which the driver keeps for the context (sticky): nothing more can run.
  cudaError_t e = cudaStreamQuery(stream_);
  if (e == cudaSuccess || e == cudaErrorNotReady) return {};
  return fmt::format("GPU {}: {} ({})", device_, cudaGetErrorString(e), cudaGetErrorName(e));
}

void CudaBackend::synchronize() { check(cudaStreamSynchronize(stream_), "synchronize"); }

Tensor CudaBackend::scratch(DType dtype, Shape shape) {
  std::shared_ptr<void> keep;
  void* p = active_pool_->allocate(size_t(shape.numel()) * dtype_size(dtype), keep);
  return Tensor(p, dtype, shape, Device::CUDA, keep);
}

Tensor CudaBackend::as_dtype(const Tensor& x, DType dtype, bool need_packed_rows) {
  DS_CHECK(x.device() == Device::CUDA, "cuda backend: a {} tensor {} is in host memory; upload it first",
           dtype_name(x.dtype()), x.shape().str());
  bool ok = x.dtype() == dtype && (x.ndim() == 0 || x.stride(-1) == 1);
  if (ok && need_packed_rows) {
    // GEMM operands: 16-byte aligned base and row strides (batch strides included).
    const size_t es = dtype_size(dtype);
    ok = reinterpret_cast<uintptr_t>(x.data()) % 16 == 0;
    for (int d = 0; d + 1 < x.ndim(); ++d) ok = ok && (x.stride(d) * int64_t(es)) % 16 == 0;
  }
  if (ok) return x;
  DS_CHECK(x.ndim() <= 4, "cuda backend: tensor of rank {} not supported", x.ndim());
  Tensor out = scratch(dtype, x.shape());
  StridedCopyParams p{};
  p.src = x.data();
  p.src_dtype = x.dtype();
  p.ndim = x.ndim();
  for (int d = 0; d < x.ndim(); ++d) {
    p.sizes[d] = x.size(d);
    p.strides[d] = x.stride(d);
  }
  p.dst = out.data();
  p.dst_dtype = dtype;
  check(launch_strided_copy(p, stream_), "strided copy / dtype conversion");
  return out;
}

Tensor CudaBackend::upload_i32(const std::vector<int32_t>& v, Shape shape) {
  DS_CHECK(int64_t(v.size()) == shape.numel(), "upload_i32: {} values for shape {}", v.size(), shape.str());
  Tensor t = scratch(DType::I32, shape);
  if (!v.empty())
    check(cudaMemcpyAsync(t.data(), v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream_), "upload_i32");
  return t;
}

void CudaBackend::write_i32(Tensor& dst, const int32_t* src, int64_t rows, int64_t cols, int64_t src_ld) {
  DS_CHECK(dst.device() == Device::CUDA && dst.dtype() == DType::I32 && dst.is_contiguous() &&
               (dst.ndim() == 1 || dst.ndim() == 2),
           "write_i32: destination must be a contiguous GPU I32 vector or matrix, found {} {}",
           dtype_name(dst.dtype()), dst.shape().str());
  const int64_t dst_rows = dst.ndim() == 2 ? dst.size(0) : 1, dst_cols = dst.size(-1);
  DS_CHECK(rows >= 0 && cols >= 0 && rows <= dst_rows && cols <= dst_cols && src_ld >= cols,
           "write_i32: a {}x{} block does not fit {}", rows, cols, dst.shape().str());
  if (rows == 0 || cols == 0) return;
  check(cudaMemcpy2DAsync(dst.data(), size_t(dst_cols) * 4, src, size_t(src_ld) * 4, size_t(cols) * 4, size_t(rows),
                          cudaMemcpyHostToDevice, stream_),
        "write_i32");
}

void CudaBackend::copy_into(Tensor& dst, const Tensor& src) {
  DS_CHECK(dst.device() == Device::CUDA && dst.is_contiguous() && src.is_contiguous() && dst.dtype() == src.dtype() &&
               dst.numel() == src.numel(),
           "copy_into: expected contiguous tensors of one dtype and size (destination on the GPU), found {} {} <- {} {}",
           dtype_name(dst.dtype()), dst.shape().str(), dtype_name(src.dtype()), src.shape().str());
  if (dst.nbytes() == 0) return;
  const auto kind = src.device() == Device::CUDA ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
  check(cudaMemcpyAsync(dst.data(), src.data(), dst.nbytes(), kind, stream_), "copy_into");
}

}  // namespace dsserve::cuda
