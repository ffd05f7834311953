// NCCL across nodes for the CUDA backend: node 0 makes the communicator's unique id before any
// device is touched (it travels to the other nodes as the rendezvous payload), then every node
// joins one communicator over all global ranks with its local GPUs (cuda_multi_node.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace dsserve {

class Backend;

// NCCL's unique id as bytes (ncclGetUniqueId: NCCL's bootstrap listener, no CUDA context).
std::string nccl_unique_id();
// Backends on local devices first_device..first_device+local_world-1, local device l being global
// rank first_rank + l of a communicator over `world` ranks (ncclCommInitRank per device inside one
// NCCL group call). first_device is 0 on a real node (tests run several "nodes" on one machine).
std::vector<std::unique_ptr<Backend>> create_cuda_node_backends(int world, int first_rank, int local_world,
                                                                const std::string& unique_id, int first_device = 0);

}  // namespace dsserve
