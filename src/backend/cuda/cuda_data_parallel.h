// CUDA backends for data-parallel attention (create_backends in backend.h chooses them).
#pragma once
#include <memory>
#include <vector>

namespace dsserve {

class Backend;

// `world` CudaBackends on devices 0..world-1 in `groups` attention groups of consecutive ranks:
// one NCCL communicator over all of them (ncclCommInitAll), split (ncclCommSplit) into each
// group's and into the one of the ranks at each position of every group.
std::vector<std::unique_ptr<Backend>> create_cuda_data_parallel_backends(int world, int groups);

}  // namespace dsserve
