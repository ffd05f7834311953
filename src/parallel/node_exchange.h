// The CPU backend's data path between nodes: an all-gather of float buffers over TCP. Every node
// sends its ranks' buffers to node 0, node 0 puts all of them in global rank order and sends the
// whole set back, so every rank of every node sees the same bytes (and sums them in the same order
// as one process would). Bounded by --dist-timeout: a peer that stops answering is named, never
// waited for forever. Home-made on purpose: the CPU backend is the test oracle; GPUs use NCCL.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/bootstrap.h"

namespace dsserve {

class NodeExchange {
 public:
  // Node 0: `peers` holds one data connection per other node (index node rank - 1); another node:
  // `to_node0` is its data connection to node 0.
  NodeExchange(int node_rank, int nnodes, int ranks_per_node, std::vector<std::unique_ptr<Channel>> peers,
               std::unique_ptr<Channel> to_node0, double timeout_s);

  // local: this node's ranks' buffers of n floats each, in local rank order. all: every global
  // rank's buffer, [world * n], rank r's at [r * n, (r + 1) * n). Throws naming the peer on failure.
  void all_gather(const std::vector<const float*>& local, int64_t n, std::vector<float>& all);

  int node_rank() const { return node_rank_; }
  int ranks_per_node() const { return ranks_per_node_; }
  int world() const { return nnodes_ * ranks_per_node_; }

 private:
  int node_rank_, nnodes_, ranks_per_node_;
  std::vector<std::unique_ptr<Channel>> peers_;
  std::unique_ptr<Channel> to_node0_;
  double timeout_s_;
};

}  // namespace dsserve
