// NCCL for the CUDA backend: a tensor-parallel group of CudaBackends (one communicator per device
// from ncclCommInitAll, in one process) and the in-place all-reduce on the backend's stream.
#include <nccl.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace dsserve {

namespace {
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail("NCCL {} failed: {}", what, ncclGetErrorString(r));
}
}  // namespace

std::vector<std::unique_ptr<Backend>> create_cuda_group_backends(int world) {
  std::vector<std::unique_ptr<Backend>> out;
  // Constructing backends and communicators switches this thread's device; the caller keeps its own.
  int caller_device = 0;
  cuda::cuda_check(cudaGetDevice(&caller_device), "cudaGetDevice");
  std::vector<std::unique_ptr<cuda::CudaBackend>> backends;
  for (int r = 0; r < world; ++r) backends.push_back(std::make_unique<cuda::CudaBackend>(r));
  std::vector<ncclComm_t> comms(static_cast<size_t>(world), nullptr);
  std::vector<int> devices(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) devices[size_t(r)] = r;
  nccl_check(ncclCommInitAll(comms.data(), world, devices.data()), "ncclCommInitAll");
  for (int r = 0; r < world; ++r) {
    ncclComm_t c = comms[size_t(r)];
    backends[size_t(r)]->set_communicator(std::shared_ptr<void>(c, [](void* p) {
      ncclCommDestroy(static_cast<ncclComm_t>(p));
    }));
    out.push_back(std::move(backends[size_t(r)]));
  }
  cuda::cuda_check(cudaSetDevice(caller_device), "cudaSetDevice");
  return out;
}

namespace cuda {

void CudaBackend::bind_thread() { check(cudaSetDevice(device_), "cudaSetDevice"); }

namespace {
ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::BF16: return ncclBfloat16;
    case DType::F32: return ncclFloat32;
    default: fail("NCCL collective: unsupported dtype {}", dtype_name(d));
  }
}
}  // namespace

Tensor CudaBackend::all_gather_cols(const Tensor& x) {
  if (!comm_) return x;
  DS_CHECK(x.device() == Device::CUDA && x.is_contiguous() && x.ndim() == 2,
           "all_gather_cols: expected a contiguous device [R, C] tensor, found {}", x.shape().str());
  auto comm = static_cast<ncclComm_t>(comm_.get());
  int world = 1;
  nccl_check(ncclCommCount(comm, &world), "ncclCommCount");
  const int64_t R = x.size(0), C = x.size(1);
  const size_t es = dtype_size(x.dtype());
  Tensor gathered = scratch(x.dtype(), {world, R, C});  // rank-major
  nccl_check(ncclAllGather(x.data(), gathered.data(), size_t(R * C), nccl_type(x.dtype()), comm, stream_),
             "ncclAllGather");
  Tensor out = scratch(x.dtype(), {R, world * C});
  for (int r = 0; r < world; ++r)
    check(cudaMemcpy2DAsync(static_cast<char*>(out.data()) + size_t(r * C) * es, size_t(world * C) * es,
                            static_cast<const char*>(gathered.data()) + size_t(r) * size_t(R * C) * es, size_t(C) * es,
                            size_t(C) * es, size_t(R), cudaMemcpyDeviceToDevice, stream_),
          "all_gather_cols (columns into place)");
  return out;
}

void CudaBackend::all_reduce_sum(Tensor& x) {
  if (!comm_) return;
  DS_CHECK(x.device() == Device::CUDA && x.is_contiguous(), "all_reduce_sum: expected a contiguous device tensor {}",
           x.shape().str());
  const ncclDataType_t t = nccl_type(x.dtype());
  nccl_check(ncclAllReduce(x.data(), x.data(), size_t(x.numel()), t, ncclSum, static_cast<ncclComm_t>(comm_.get()),
                           stream_),
             "ncclAllReduce");
}

}  // namespace cuda
}  // namespace dsserve
