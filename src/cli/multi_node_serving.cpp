// Multi-node serving on the nodes other than node 0 (see multi_node_serving.h).
#include "cli/multi_node_serving.h"

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "model/weight_source.h"
#include "parallel/multi_node_model.h"

namespace dsserve {

NodeGroupOptions node_group_options(const ModelOptions& o, const ModelConfig& cfg, int64_t context_len) {
  NodeGroupOptions g;
  g.nnodes = o.nnodes;
  g.node_rank = o.node_rank;
  g.dist_init_addr = o.dist_init_addr;
  g.dist_timeout_s = o.dist_timeout_s;
  g.tp_size = o.tp_size;
  g.device = resolve_device(parse_device_kind(o.device));
  // What must match on every node for the shards to fit together (the path may differ per node).
  g.fingerprint = fmt::format("{} layers={} hidden={} experts={} vocab={} tp={} ep={} context={} load-format={} seed={}",
                              cfg.architecture, cfg.num_hidden_layers, cfg.hidden_size, cfg.n_routed_experts,
                              cfg.vocab_size, o.tp_size, o.ep_size, context_len, o.load_format,
                              o.load_format == "dummy" ? std::to_string(o.random_seed) : "-");
  return g;
}

void serve_other_node(const ModelOptions& o) {
  DS_CHECK(o.nnodes > 1 && o.node_rank > 0, "serve_other_node: node rank {} of {}", o.node_rank, o.nnodes);
  DS_CHECK(o.load_format == "auto" || o.load_format == "safetensors" || o.load_format == "dummy",
           "--load-format: expected auto, safetensors or dummy, found '{}'", o.load_format);
  ModelConfig cfg = load_model_config(o);
  const int64_t ctx =
      o.context_length > 0 ? o.context_length : std::min<int64_t>(cfg.max_position_embeddings, 32768);
  NodeGroup group = join_node_group(node_group_options(o, cfg, ctx));
  std::unique_ptr<WeightSource> src;
  if (o.load_format == "dummy")
    src = std::make_unique<DummyWeights>(cfg, o.random_seed);
  else
    src = std::make_unique<CheckpointWeights>(o.model_path, cfg);
  spdlog::info("node rank {}: loading ranks {}..{} of {} from {}", o.node_rank, group.first_rank(),
               group.first_rank() + group.ranks_per_node - 1, group.world, src->describe());
  LoadOptions lo;
  lo.load_mtp = false;
  lo.shard.expert_parallel = o.ep_size > 1;
  serve_node_commands(std::move(group), cfg, *src, ctx, lo);
}

}  // namespace dsserve
