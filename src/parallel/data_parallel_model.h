// Data-parallel attention in one process (--enable-dp-attention --dp-size D --tp-size N): N ranks
// (one thread and one backend each, as replica_runner.h) in D attention groups of N / D
// consecutive ranks. Each group has its own batch, scheduler and latent cache (every rank of a
// group keeps a copy of the group's cache; the groups' caches differ); attention weights and the
// lm_head's vocabulary are split within a group and replicated across groups, the MLPs and
// experts split over all N ranks (ShardSpec::attention_groups). Forwards run in lockstep rounds:
// a round starts once every group that has work has handed in its batch; groups without work join
// it with an empty batch, so every rank meets every collective (the MLP runs over the tokens of all
// groups). Group g's scheduler sees the model through group(g), a ModelRunner whose forward blocks
// until its round is done. With decode graphs recorded (CUDA), a round whose batches are all
// recordable decode batches (or empty) replays them: every group's batch padded to one recorded
// size, so the gather before each MLP has a fixed shape; any other round runs eagerly.
#pragma once
#include <condition_variable>
#include <memory>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "model/deepseek_v3.h"
#include "parallel/rank_group.h"

namespace dsserve {

class DataParallelModel {
 public:
  // Loads rank r's shard onto backends[r] (from create_backends(kind, {N, groups})),
  // one rank at a time. opt.shard.expert_parallel places whole routed experts on the N ranks.
  DataParallelModel(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, int groups,
                    WeightSource& weights, int64_t context_len, const LoadOptions& opt);
  ~DataParallelModel();
  DataParallelModel(const DataParallelModel&) = delete;
  DataParallelModel& operator=(const DataParallelModel&) = delete;

  int groups() const { return groups_; }
  int world() const { return ranks_.size(); }
  int ranks_per_group() const { return world() / groups_; }
  const ModelConfig& config() const { return ranks_.rank(0).model->model().config(); }
  // Gives every rank a latent cache of num_pages pages (the ranks of one group hold the same entries).
  void allocate_caches(int64_t num_pages, int page_size, std::optional<DType> dtype = std::nullopt);
  // What group g's scheduler runs forwards through, and the cache it passes (its first rank's).
  ModelRunner& group(int g);
  LatentCache& cache(int g) { return ranks_.rank(lead(g)).model->cache(); }
  Backend& backend(int rank) { return *ranks_.rank(rank).backend; }
  // Every rank records its decode forward at these batch sizes (sizes per group: the MLP runs over
  // groups() times as many rows), all ranks together. False when the backends cannot record.
  bool capture_decode_graphs(int32_t trash_slot, const std::vector<int>& batch_sizes);
  int64_t rounds() const;        // lockstep rounds run so far
  int64_t graph_rounds() const;  // of which replayed decode graphs
  void synchronize() { ranks_.synchronize(); }  // waits for every rank's device work

 private:
  class GroupRunner;
  int lead(int g) const { return g * ranks_per_group(); }
  ForwardOutput submit(int g, const ForwardBatch& batch, const LatentCache& cache);
  void set_has_work(int g, bool has_work);
  bool round_ready() const;  // under mu_
  void coordinate();         // the coordinator thread: forms and runs the rounds

  int groups_;
  RankGroup ranks_;
  std::vector<std::unique_ptr<GroupRunner>> runners_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<const ForwardBatch*> pending_;  // a group's batch waiting for its round
  std::vector<char> busy_, done_;
  std::vector<ForwardOutput> results_;
  std::vector<std::exception_ptr> errors_;
  int64_t rounds_ = 0, graph_rounds_ = 0;
  bool stop_ = false;
  std::thread coordinator_;
};

}  // namespace dsserve
