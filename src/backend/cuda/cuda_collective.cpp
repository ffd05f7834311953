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

void CudaBackend::all_reduce_sum(Tensor& x) {
  if (!comm_) return;
  DS_CHECK(x.device() == Device::CUDA && x.is_contiguous(), "all_reduce_sum: expected a contiguous device tensor {}",
           x.shape().str());
  ncclDataType_t t;
  switch (x.dtype()) {
    case DType::BF16: t = ncclBfloat16; break;
    case DType::F32: t = ncclFloat32; break;
    default: fail("all_reduce_sum: unsupported dtype {}", dtype_name(x.dtype()));
  }
  nccl_check(ncclAllReduce(x.data(), x.data(), size_t(x.numel()), t, ncclSum, static_cast<ncclComm_t>(comm_.get()),
                           stream_),
             "ncclAllReduce");
}

}  // namespace cuda
}  // namespace dsserve
