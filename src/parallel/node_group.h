// Joining the nodes of a multi-node tensor-parallel group (--nnodes K, --node-rank R, --tp-size N:
// N / K ranks per node, global rank = R * (N / K) + local): the rendezvous over TCP before any
// device is touched, the control channels node 0 sends commands over, and this node's backends,
// whose collectives span all nodes (CUDA: one NCCL communicator, node 0's unique id travelling as
// the rendezvous payload; CPU: a separate data connection per node, see node_exchange.h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "parallel/bootstrap.h"

namespace dsserve {

struct NodeGroupOptions {
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;  // HOST:PORT of node 0
  double dist_timeout_s = 600;
  int tp_size = 1;  // ranks over all nodes
  DeviceKind device = DeviceKind::Auto;
  std::string fingerprint;  // what every node must agree on (model, layout); mismatch is refused
};

struct NodeGroup {
  int nnodes = 1, node_rank = 0, ranks_per_node = 1, world = 1;
  double timeout_s = 600;
  std::vector<std::unique_ptr<Channel>> peers;  // node 0: control channel per other node (index rank - 1)
  std::unique_ptr<Channel> to_node0;            // other nodes: the control channel to node 0
  std::vector<std::unique_ptr<Backend>> backends;  // this node's ranks, local rank l on device l

  int first_rank() const { return node_rank * ranks_per_node; }
};

// Checks the layout (--tp-size a multiple of --nnodes), runs the rendezvous and builds this node's
// backends. Throws naming the flag, the missing node or the peer that failed.
NodeGroup join_node_group(const NodeGroupOptions& opt);

}  // namespace dsserve
