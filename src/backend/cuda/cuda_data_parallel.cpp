// NCCL for data-parallel attention: the communicators (world, attention group, across the groups)
// of one process's GPUs, the world all-reduce, and the gather of every group's rows (each group's
// rows padded to the largest count for one ncclAllGather, then packed in group order).
#include <nccl.h>

#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_data_parallel.h"
#include "core/error.h"

namespace dsserve {

namespace {

void nccl_ok(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail("NCCL {} failed: {}", what, ncclGetErrorString(r));
}

std::shared_ptr<void> owned(ncclComm_t c) {
  return std::shared_ptr<void>(c, [](void* p) { ncclCommDestroy(static_cast<ncclComm_t>(p)); });
}

ncclDataType_t nccl_dtype(DType d) {
  switch (d) {
    case DType::BF16: return ncclBfloat16;
    case DType::F32: return ncclFloat32;
    default: fail("NCCL collective: unsupported dtype {}", dtype_name(d));
  }
}

}  // namespace

std::vector<std::unique_ptr<Backend>> create_cuda_data_parallel_backends(int world, int groups) {
  DS_CHECK(world >= 1 && groups >= 1 && world % groups == 0, "--dp-size {} must divide --tp-size {}", groups, world);
  const int per_group = world / groups;
  int caller_device = 0;
  cuda::cuda_check(cudaGetDevice(&caller_device), "cudaGetDevice");
  std::vector<std::unique_ptr<cuda::CudaBackend>> backends;
  for (int r = 0; r < world; ++r) backends.push_back(std::make_unique<cuda::CudaBackend>(r));
  std::vector<ncclComm_t> all(size_t(world), nullptr), group(size_t(world), nullptr), across(size_t(world), nullptr);
  std::vector<int> devices(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) devices[size_t(r)] = r;
  nccl_ok(ncclCommInitAll(all.data(), world, devices.data()), "ncclCommInitAll");
  // One thread splits every device's communicator: the calls form one NCCL group.
  nccl_ok(ncclGroupStart(), "ncclGroupStart");
  for (int r = 0; r < world; ++r) {
    cuda::cuda_check(cudaSetDevice(r), "cudaSetDevice");
    nccl_ok(ncclCommSplit(all[size_t(r)], r / per_group, r % per_group, &group[size_t(r)], nullptr),
            "ncclCommSplit (attention groups)");
  }
  nccl_ok(ncclGroupEnd(), "ncclGroupEnd");
  nccl_ok(ncclGroupStart(), "ncclGroupStart");
  for (int r = 0; r < world; ++r) {
    cuda::cuda_check(cudaSetDevice(r), "cudaSetDevice");
    nccl_ok(ncclCommSplit(all[size_t(r)], r % per_group, r / per_group, &across[size_t(r)], nullptr),
            "ncclCommSplit (across groups)");
  }
  nccl_ok(ncclGroupEnd(), "ncclGroupEnd");
  std::vector<std::unique_ptr<Backend>> out;
  for (int r = 0; r < world; ++r) {
    backends[size_t(r)]->set_communicator(owned(group[size_t(r)]));
    backends[size_t(r)]->set_data_parallel_communicators(owned(all[size_t(r)]), owned(across[size_t(r)]));
    out.push_back(std::move(backends[size_t(r)]));
  }
  cuda::cuda_check(cudaSetDevice(caller_device), "cudaSetDevice");
  return out;
}

namespace cuda {

void CudaBackend::all_reduce_sum_world(Tensor& x) {
  if (!world_comm_) return all_reduce_sum(x);
  DS_CHECK(x.device() == Device::CUDA && x.is_contiguous(), "all_reduce_sum_world: expected a contiguous device "
           "tensor, found {}", x.shape().str());
  if (x.numel() == 0) return;
  nccl_ok(ncclAllReduce(x.data(), x.data(), size_t(x.numel()), nccl_dtype(x.dtype()), ncclSum,
                        static_cast<ncclComm_t>(world_comm_.get()), stream_),
          "ncclAllReduce (world)");
}

Tensor CudaBackend::all_gather_rows_groups(const Tensor& x, std::span<const int32_t> rows_per_group) {
  if (!across_comm_) return x;
  auto comm = static_cast<ncclComm_t>(across_comm_.get());
  int groups = 1, me = 0;
  nccl_ok(ncclCommCount(comm, &groups), "ncclCommCount");
  nccl_ok(ncclCommUserRank(comm, &me), "ncclCommUserRank");
  DS_CHECK(int(rows_per_group.size()) == groups, "all_gather_rows_groups: {} row counts for {} groups",
           rows_per_group.size(), groups);
  DS_CHECK(x.ndim() == 2 && x.size(0) == rows_per_group[size_t(me)], "all_gather_rows_groups: group {} passes {}, "
           "expected {} rows", me, x.shape().str(), rows_per_group[size_t(me)]);
  const int64_t C = x.size(1), pad = *std::max_element(rows_per_group.begin(), rows_per_group.end());
  int64_t total = 0;
  for (int32_t n : rows_per_group) total += n;
  const DType dt = x.numel() > 0 ? x.dtype() : activation_dtype();
  const size_t es = dtype_size(dt), row_bytes = size_t(C) * es;
  Tensor out = scratch(dt, {total, C});
  if (total == 0) return out;
  // This group's rows padded to `pad` (the padding is never read), then one all-gather.
  Tensor send = scratch(dt, {pad, C});
  if (x.numel() > 0) {
    DS_CHECK(x.device() == Device::CUDA && x.is_contiguous(), "all_gather_rows_groups: expected a contiguous device "
             "tensor, found {}", x.shape().str());
    check(cudaMemcpyAsync(send.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, stream_),
          "all_gather_rows_groups (rows into the padded buffer)");
  }
  Tensor gathered = scratch(dt, {groups, pad, C});
  nccl_ok(ncclAllGather(send.data(), gathered.data(), size_t(pad * C), nccl_dtype(dt), comm, stream_),
          "ncclAllGather (rows of every group)");
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    const int64_t n = rows_per_group[size_t(g)];
    if (n > 0)
      check(cudaMemcpyAsync(static_cast<char*>(out.data()) + size_t(row) * row_bytes,
                            static_cast<const char*>(gathered.data()) + size_t(g) * size_t(pad) * row_bytes,
                            size_t(n) * row_bytes, cudaMemcpyDeviceToDevice, stream_),
            "all_gather_rows_groups (rows into place)");
    row += n;
  }
  return out;
}

}  // namespace cuda
}  // namespace dsserve
