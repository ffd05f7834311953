// The runner of one model replica over this process's ranks (rank_group.h): one GPU (or the CPU) is
// the group of one; with --tp-size N, N ranks each with its own backend (rank r on GPU r), its own
// shard of the weights (ShardSpec; --ep-size N places whole routed experts) and its own copy of the
// latent cache (MLA's latent is shared by all heads, so every rank keeps all of it). A forward runs
// on every rank at once; the all-reduces inside the model join them; rank 0's output is the result
// (the logits are all-gathered over the vocabulary-split lm_head, so every rank has all). The runner
// owns the caches, records every kind of forward (decode, verify, MTP draft) on every rank, and
// speculative decoding runs the same way on every layout (each rank its shard of the MTP layer, its
// own MTP cache and graphs). Several nodes wrap one per node (multi_node_model.h).
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "model/model_runner.h"
#include "parallel/rank_group.h"

namespace dsserve {

// Which global ranks this process's backends are: all of them on one node; a contiguous range of a
// larger group when the ranks span several nodes (see multi_node_model.h).
struct RankSpan {
  int first = 0;  // global rank of backends[0]
  int world = 0;  // ranks in the whole group; 0: the number of backends
};

class ReplicaRunner final : public ModelRunner {
 public:
  // Loads rank r's shard onto backends[r] on rank r's thread (one rank at a time: the weight
  // source is shared). opt.shard.expert_parallel places whole routed experts on the ranks
  // (--ep-size equal to --tp-size) instead of splitting every expert's columns.
  ReplicaRunner(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, WeightSource& weights,
                int64_t context_len, const LoadOptions& opt = {}, RankSpan span = {});
  // One device whose backend the caller keeps (it must outlive the runner).
  ReplicaRunner(const ModelConfig& cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                const LoadOptions& opt = {});

  int world() const { return ranks_.size(); }
  const ModelConfig& config() const override { return lead().config(); }
  int64_t context_len() const override { return lead().context_len(); }
  // Rank 0's backend and cache: what a caller reads results through.
  Backend& backend() override { return *ranks_.rank(0).backend; }
  Backend& backend(int rank) { return *ranks_.rank(rank).backend; }
  // Rank r's model (its forward, its caches, its recorded forwards).
  RankModel& rank(int r) { return *ranks_.rank(r).model; }
  // Gives every rank a latent cache of num_pages pages (mtp: the MTP layer's; dtype as
  // DeepseekV3Model::allocate_cache); returns rank 0's, the handle to pass to the calls below.
  LatentCache make_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) override;

  // The forward on every rank, each on its own cache; rank 0's logits and hidden states.
  ForwardOutput forward(const ForwardBatch& batch);
  // As above; cache must be rank 0's (from make_cache).
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override;
  // Every rank records the forwards of `plan` over its own caches (the collectives inside included);
  // cache and mtp_cache must be rank 0's.
  bool capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) override;
  RecordedGraphs recorded_graphs() const override { return ranks_.rank(0).model->recorded_graphs(); }
  std::string device_fatal_error() override { return ranks_.fatal_error(); }  // the first failed rank's reason
  int64_t progress() const override { return lead().progress(); }
  // Speculative decoding over the ranks: the MTP layer's forward on every rank (each gathering the
  // previous hidden states from its own copy), and cache moves applied to every rank's copy.
  bool has_mtp() const override { return lead().has_mtp(); }
  ForwardOutput forward_mtp(const ForwardBatch& batch, const HiddenRows& prev_hidden, LatentCache& mtp_cache) override;
  void move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src, const std::vector<int32_t>& dst) override;
  // Waits for every rank's device work.
  void synchronize() override { ranks_.synchronize(); }

 private:
  const DeepseekV3Model& lead() const { return ranks_.rank(0).model->model(); }
  // Whether `cache` is rank 0's MTP cache; throws when it is neither of rank 0's caches.
  bool check_lead_cache(const LatentCache& cache, const char* op) const;
  RankGroup ranks_;
};

}  // namespace dsserve
