// `dsserve serve` over several nodes (--nnodes K --node-rank R, the same command on every node):
// the group options every node derives from its flags (including what the nodes must agree on),
// and the whole life of a node other than node 0: join, load its ranks' shards, run node 0's
// commands until node 0 shuts down (exit 0) or goes away (an error naming node 0).
#pragma once
#include "cli/model_options.h"
#include "io/model_config.h"
#include "parallel/node_group.h"

namespace dsserve {

NodeGroupOptions node_group_options(const ModelOptions& o, const ModelConfig& cfg, int64_t context_len);

// For o.node_rank > 0: returns when node 0 shuts down cleanly, throws with the reason otherwise.
void serve_other_node(const ModelOptions& o);

}  // namespace dsserve
