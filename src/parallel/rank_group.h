// The ranks of one process's share of a model: one backend per rank (rank r on device r), each
// with its RankModel (its shard of the weights (ShardSpec), its own copy of the latent cache and
// of the MTP layer's, its recorded forwards) and its last forward's outputs. Every operation runs
// on all ranks at once, each on its own thread with its device bound, so the collectives inside the
// model join them; a group of one runs on the caller's thread. The runner of one replica
// (replica_runner.h: one GPU, tensor or expert parallel) and data-parallel attention
// (data_parallel_model.h) are runners over a RankGroup.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/rank_model.h"
#include "parallel/rank_threads.h"

namespace dsserve {

class RankGroup {
 public:
  struct Rank {
    Backend* backend = nullptr;
    std::unique_ptr<RankModel> model;
    ForwardOutput last;
  };
  using LoadOptionsFor = std::function<LoadOptions(int rank, int ranks)>;

  // Loads rank r's shard (load_options(r, backends.size())) onto backends[r] on its thread, one rank at a time (the
  // weight source is shared). first_rank: the global rank of backends[0] (several nodes).
  RankGroup(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, WeightSource& weights,
            int64_t context_len, const LoadOptionsFor& load_options, int first_rank = 0);
  // A group of one on a backend the caller keeps (it must outlive the group).
  RankGroup(const ModelConfig& cfg, Backend& backend, WeightSource& weights, int64_t context_len,
            const LoadOptions& opt);
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
  // Moves cache slots src[i] -> dst[i] in every rank's copy of the target's (or the MTP layer's) cache.
  void move_cache_slots(bool mtp, const std::vector<int32_t>& src, const std::vector<int32_t>& dst);
  // Every rank records the forwards of `plan` over its own caches (the collectives inside included).
  // False when the backends cannot record.
  bool capture_graphs(const GraphPlan& plan);
  void synchronize();
  // The first failed rank's reason (see Backend::fatal_error); empty while all are healthy.
  std::string fatal_error();

 private:
  void load(const ModelConfig& cfg, WeightSource& weights, int64_t context_len, const LoadOptionsFor& load_options);

  std::vector<std::unique_ptr<Backend>> owned_;
  std::vector<Rank> ranks_;
  int first_rank_ = 0;
  RankThreads threads_;
};

}  // namespace dsserve
