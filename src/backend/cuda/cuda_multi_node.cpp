// One NCCL communicator over the GPUs of several nodes (see cuda_multi_node.h).
#include "backend/cuda/cuda_multi_node.h"

#include <nccl.h>

#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace dsserve {

namespace {
void nccl_ok(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail("NCCL {} failed: {}", what, ncclGetErrorString(r));
}
}  // namespace

std::string nccl_unique_id() {
  ncclUniqueId id;
  nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
  return std::string(id.internal, sizeof id.internal);
}

std::vector<std::unique_ptr<Backend>> create_cuda_node_backends(int world, int first_rank, int local_world,
                                                                const std::string& unique_id, int first_device) {
  ncclUniqueId id;
  DS_CHECK(unique_id.size() == sizeof id.internal, "NCCL unique id from node 0: {} bytes, expected {}",
           unique_id.size(), sizeof id.internal);
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  const int visible = cuda_visible_devices();
  DS_CHECK(visible >= first_device + local_world, "this node runs {} ranks (--tp-size / --nnodes) on GPUs from {} but "
           "sees {} GPUs", local_world, first_device, visible);
  int caller_device = 0;
  cuda::cuda_check(cudaGetDevice(&caller_device), "cudaGetDevice");
  std::vector<std::unique_ptr<cuda::CudaBackend>> backends;
  for (int l = 0; l < local_world; ++l) backends.push_back(std::make_unique<cuda::CudaBackend>(first_device + l));
  std::vector<ncclComm_t> comms(size_t(local_world), nullptr);
  nccl_ok(ncclGroupStart(), "ncclGroupStart");
  for (int l = 0; l < local_world; ++l) {
    cuda::cuda_check(cudaSetDevice(first_device + l), "cudaSetDevice");
    nccl_ok(ncclCommInitRank(&comms[size_t(l)], world, id, first_rank + l), "ncclCommInitRank");
  }
  nccl_ok(ncclGroupEnd(), "ncclGroupEnd (joining the communicator of every node)");
  std::vector<std::unique_ptr<Backend>> out;
  for (int l = 0; l < local_world; ++l) {
    backends[size_t(l)]->set_communicator(std::shared_ptr<void>(comms[size_t(l)], [](void* p) {
      ncclCommDestroy(static_cast<ncclComm_t>(p));
    }));
    out.push_back(std::move(backends[size_t(l)]));
  }
  cuda::cuda_check(cudaSetDevice(caller_device), "cudaSetDevice");
  return out;
}

}  // namespace dsserve
