// CPU backends for this node's ranks of a tensor-parallel group spread over several processes:
// all_reduce_sum and all_gather_cols meet this node's rank threads, exchange every rank's buffer
// with the other nodes (NodeExchange), and sum in GLOBAL rank order, so the values are bit-identical
// to one process with the same --tp-size. A failed or silent peer breaks the group: the collective
// in flight and every later one throw the reason (Backend::fatal_error reports it).
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "parallel/node_exchange.h"

namespace dsserve {

// exchange->ranks_per_node() backends, local rank l being global rank node_rank * ranks_per_node + l.
// timeout_s bounds how long a rank thread waits for the other ranks of its node at a collective.
std::vector<std::unique_ptr<Backend>> create_multi_node_cpu_backends(std::shared_ptr<NodeExchange> exchange,
                                                                     double timeout_s);

}  // namespace dsserve
