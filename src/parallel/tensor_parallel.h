// Tensor parallelism in one process (--tp-size N): N ranks, each a worker thread with its own
// backend (rank r on GPU r), its own shard of the weights (see ShardSpec) and its own copy of the
// latent cache (MLA's latent is shared by all heads, so every rank keeps all of it). A forward
// runs on every rank at once; the all-reduces inside the model join them; rank 0's output is
// the result (the logits are all-gathered over the vocabulary-split lm_head, so every rank has all).
#pragma once
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "model/deepseek_v3.h"

namespace dsserve {

// One thread per rank, each running the jobs given to run_all (all ranks at once).
class RankThreads {
 public:
  explicit RankThreads(int world);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  // Runs job(rank) on every rank's thread and waits for all; rethrows the first rank's exception.
  void run_all(const std::function<void(int)>& job);
  int world() const { return int(workers_.size()); }

 private:
  struct Worker {
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    const std::function<void(int)>* job = nullptr;
    uint64_t generation = 0, done = 0;
    std::exception_ptr error;
    bool stop = false;
  };
  void loop(int rank);
  std::vector<std::unique_ptr<Worker>> workers_;
};

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
  ~TensorParallelModel() override;

  int world() const { return int(ranks_.size()); }
  const ModelConfig& config() const override { return ranks_[0].model->config(); }
  int64_t context_len() const override { return ranks_[0].model->context_len(); }
  // Rank 0's backend and cache: what a caller reads results through.
  Backend& backend() override { return *ranks_[0].backend; }
  Backend& backend(int rank) { return *ranks_[size_t(rank)].backend; }
  // Gives every rank a latent cache of num_pages pages (dtype as DeepseekV3Model::allocate_cache);
  // returns rank 0's.
  LatentCache& allocate_cache(int64_t num_pages, int page_size, std::optional<DType> dtype = std::nullopt);
  LatentCache& cache() { return ranks_[0].cache; }
  // Gives every rank an MTP latent cache (speculative decoding: each rank runs its shard of the MTP
  // layer over its own copy); returns rank 0's.
  LatentCache& allocate_mtp_cache(int64_t num_pages, int page_size, std::optional<DType> dtype = std::nullopt);

  // The forward on every rank, each on its own cache; rank 0's logits and hidden states.
  ForwardOutput forward(const ForwardBatch& batch);
  // As above; cache must be rank 0's (from allocate_cache).
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override;
  // Every rank records its decode forward over its own cache (the collectives inside included).
  bool capture_decode_graphs(LatentCache& cache, int32_t trash_slot, const std::vector<int>& batch_sizes) override;
  std::vector<int> decode_graph_sizes() const override { return ranks_[0].model->decode_graph_sizes(); }
  std::string device_fatal_error() override;  // the first failed rank's reason
  int64_t progress() const override { return ranks_[0].model->progress(); }
  double decode_graph_capture_seconds() const override { return ranks_[0].model->decode_graph_capture_seconds(); }
  int64_t decode_graph_replays() const { return ranks_[0].model->decode_graph_replays(); }
  // Speculative decoding over the ranks: the MTP layer's forward on every rank (prev_hidden copied to
  // each rank's device), and cache moves applied to every rank's copy of the cache.
  bool has_mtp() const override { return ranks_[0].model->has_mtp(); }
  ForwardOutput forward_mtp(const ForwardBatch& batch, const Tensor& prev_hidden, LatentCache& mtp_cache) override;
  void move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src, const std::vector<int32_t>& dst) override;
  // Waits for every rank's device work.
  void synchronize();

 private:
  struct Rank {
    std::unique_ptr<Backend> backend;
    std::unique_ptr<DeepseekV3Model> model;
    LatentCache cache, mtp_cache;
    ForwardOutput last;
  };
  std::vector<Rank> ranks_;
  int first_rank_ = 0;
  RankThreads threads_;
};

}  // namespace dsserve
