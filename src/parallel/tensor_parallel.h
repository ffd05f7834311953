// Tensor parallelism in one process (--tp-size N): N ranks (rank_group.h), each a worker thread
// with its own backend (rank r on GPU r), its own shard of the weights (see ShardSpec) and its own
// copy of the latent cache (MLA's latent is shared by all heads, so every rank keeps all of it). A
// forward runs on every rank at once; the all-reduces inside the model join them; rank 0's output
// is the result (the logits are all-gathered over the vocabulary-split lm_head, so every rank has
// all). Speculative decoding runs on every rank (each its shard of the MTP layer, its own MTP cache,
// its own CUDA graphs of every kind).
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "model/deepseek_v3.h"
#include "parallel/rank_group.h"

namespace dsserve {

// Which global ranks this process's backends are: all of them on one node; a contiguous range of a
// larger group when the ranks span several nodes (see multi_node_model.h).
struct RankSpan {
  int first = 0;  // global rank of backends[0]
  int world = 0;  // ranks in the whole group; 0: the number of backends
};

class TensorParallelModel final : public ModelRunner {
 public:
  // Loads rank r's shard onto backends[r] on rank r's thread (one rank at a time: the weight
  // source is shared). opt.shard.expert_parallel places whole routed experts on the ranks
  // (--ep-size equal to --tp-size) instead of splitting every expert's columns.
  TensorParallelModel(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, WeightSource& weights,
                      int64_t context_len, const LoadOptions& opt, RankSpan span = {});

  int world() const { return ranks_.size(); }
  const ModelConfig& config() const override { return lead().config(); }
  int64_t context_len() const override { return lead().context_len(); }
  // Rank 0's backend and cache: what a caller reads results through.
  Backend& backend() override { return *ranks_.rank(0).backend; }
  Backend& backend(int rank) { return *ranks_.rank(rank).backend; }
  // Gives every rank a latent cache of num_pages pages (dtype as DeepseekV3Model::allocate_cache);
  // returns rank 0's.
  LatentCache& allocate_cache(int64_t num_pages, int page_size, std::optional<DType> dtype = std::nullopt);
  LatentCache& cache() { return ranks_.rank(0).cache; }
  // Gives every rank an MTP latent cache (speculative decoding: each rank runs its shard of the MTP
  // layer over its own copy); returns rank 0's.
  LatentCache& allocate_mtp_cache(int64_t num_pages, int page_size, std::optional<DType> dtype = std::nullopt);
  LatentCache make_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) override {
    return mtp ? allocate_mtp_cache(num_pages, page_size, dtype) : allocate_cache(num_pages, page_size, dtype);
  }

  // The forward on every rank, each on its own cache; rank 0's logits and hidden states.
  ForwardOutput forward(const ForwardBatch& batch);
  // As above; cache must be rank 0's (from allocate_cache).
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override;
  // Every rank records the forwards of `plan` over its own caches (the collectives inside included);
  // cache and mtp_cache must be rank 0's.
  bool capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) override;
  RecordedGraphs recorded_graphs() const override { return lead().recorded_graphs(); }
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
  const DeepseekV3Model& lead() const { return *ranks_.rank(0).model; }
  void check_lead_cache(const LatentCache& cache, bool mtp, const char* op) const;
  RankGroup ranks_;
};

}  // namespace dsserve
