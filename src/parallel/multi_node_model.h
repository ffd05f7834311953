// Tensor parallelism over several nodes. Node 0's runner (MultiNodeModel) runs its own ranks as a
// ReplicaRunner and, before each operation (allocate the latent cache, record the decode
// graphs, one forward, shut down), sends the command to every other node; each node answers when
// the operation is done. The other nodes run serve_node_commands: their ranks' shards, executing
// node 0's commands until it shuts down. The collectives inside the forward join all nodes' ranks;
// rank 0's logits are the result, as on one node.
//
// Any failure of an operation spanning nodes (a node gone, a forward failed on some node, a
// collective timed out) is fatal: the nodes may be out of step, so device_fatal_error() reports
// the reason and nothing more runs (the scheduler aborts; the server's watchdog exits non-zero).
// A monitor thread watches the control channels: a node that goes away while idle makes the next
// operation fail at once; one that goes away while an operation stays stuck (an NCCL collective
// waits for it forever) ends the process with the reason after kStuckGraceSeconds.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/multi_node_protocol.h"
#include "parallel/node_group.h"
#include "parallel/replica_runner.h"

namespace dsserve {

class MultiNodeModel final : public ModelRunner {
 public:
  // Loads node 0's ranks' shards (group.backends) and keeps the control channels to the others.
  MultiNodeModel(NodeGroup group, const ModelConfig& cfg, WeightSource& weights, int64_t context_len,
                 const LoadOptions& opt);
  // Sends shutdown: the other nodes exit 0.
  ~MultiNodeModel() override;

  const ModelConfig& config() const override { return local_->config(); }
  int64_t context_len() const override { return local_->context_len(); }
  Backend& backend() override { return local_->backend(); }
  int world() const { return group_.world; }
  // Every rank of every node gets a latent cache of num_pages pages; returns rank 0's.
  LatentCache allocate_cache(int64_t num_pages, int page_size, std::optional<DType> dtype = std::nullopt);
  LatentCache make_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) override {
    DS_CHECK(!mtp, "several nodes: speculative decoding runs on one node (no MTP cache)");
    return allocate_cache(num_pages, page_size, dtype);
  }
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override;
  bool capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) override;  // decode only
  RecordedGraphs recorded_graphs() const override { return local_->recorded_graphs(); }
  void synchronize() override { local_->synchronize(); }
  std::string device_fatal_error() override;
  int64_t progress() const override { return local_->progress(); }

 private:
  // Sends c to every other node, runs `local` here, then waits for every node's reply.
  void run_everywhere(const NodeCommand& c, const std::function<void()>& local);
  void set_fatal(const std::string& reason);
  void monitor();

  static constexpr double kStuckGraceSeconds = 10;
  NodeGroup group_;
  std::unique_ptr<ReplicaRunner> local_;
  std::mutex mu_;
  std::string fatal_;
  std::atomic<int64_t> op_started_ns_{0};  // steady-clock start of the operation in flight; 0: none
  std::atomic<bool> stop_monitor_{false};
  std::thread monitor_;
};

// A node other than node 0: loads this node's ranks' shards and executes node 0's commands until it
// sends shutdown (returns) or goes away (throws naming node 0).
void serve_node_commands(NodeGroup group, const ModelConfig& cfg, WeightSource& weights, int64_t context_len,
                         const LoadOptions& opt);

}  // namespace dsserve
