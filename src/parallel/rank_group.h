// The ranks of one process's share of a model: one thread and one backend per rank (rank r on
// device r), each with its shard of the weights (ShardSpec), its own copy of the latent cache (and
// of the MTP layer's), and its last forward's outputs. Every operation runs on all ranks at once,
// each on its own thread with its device bound, so the collectives inside the model join them.
// Tensor parallelism (tensor_parallel.h) and data-parallel attention (data_parallel_model.h) are
// runners over a RankGroup.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/deepseek_v3.h"
#include "parallel/rank_threads.h"

namespace dsserve {

class RankGroup {
 public:
  struct Rank {
    std::unique_ptr<Backend> backend;
    std::unique_ptr<DeepseekV3Model> model;
    LatentCache cache, mtp_cache;
    ForwardOutput last;
  };

  // Loads rank r's shard (load_options(r, backends.size())) onto backends[r] on its thread, one rank at a time (the
  // weight source is shared). first_rank: the global rank of backends[0] (several nodes).
  RankGroup(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, WeightSource& weights,
            int64_t context_len, const std::function<LoadOptions(int rank, int ranks)>& load_options, int first_rank = 0);
  ~RankGroup();  // device memory freed on each rank's thread (its device current)
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  int size() const { return int(ranks_.size()); }
  Rank& rank(int r) { return ranks_[size_t(r)]; }
  const Rank& rank(int r) const { return ranks_[size_t(r)]; }

  // Runs job(rank, r) on every rank's thread, its device bound; rethrows the first rank's failure.
  void run_all(const std::function<void(Rank&, int)>& job);
  // Every rank's latent cache (mtp: the MTP layer's) of num_pages pages.
  void allocate_caches(int64_t num_pages, int page_size, std::optional<DType> dtype, bool mtp);
  // Every rank records the forwards of `plan` over its own caches (the collectives inside included).
  // False when the backends cannot record.
  bool capture_graphs(const GraphPlan& plan);
  void synchronize();
  // The first failed rank's reason (see Backend::fatal_error); empty while all are healthy.
  std::string fatal_error();

 private:
  std::vector<Rank> ranks_;
  int first_rank_ = 0;
  RankThreads threads_;
};

}  // namespace dsserve
