// Data-parallel attention runner (see data_parallel_model.h): loading, per-group runners, and the
// coordinator that runs one lockstep forward over all ranks per round.
#include "parallel/data_parallel_model.h"

#include "core/error.h"
#include "model/weight_source.h"

namespace dsserve {

// Group g as its scheduler sees it: one model replica whose forward waits for the round.
class DataParallelModel::GroupRunner final : public ModelRunner {
 public:
  GroupRunner(DataParallelModel& owner, int g) : owner_(owner), g_(g) {}
  const ModelConfig& config() const override { return owner_.config(); }
  int64_t context_len() const override { return owner_.ranks_[0].model->context_len(); }
  Backend& backend() override { return *owner_.ranks_[size_t(owner_.lead(g_))].backend; }
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override { return owner_.submit(g_, batch, cache); }
  // Recording involves every group at once: DataParallelModel::capture_decode_graphs.
  bool capture_decode_graphs(LatentCache&, int32_t, const std::vector<int>&) override { return false; }
  std::vector<int> decode_graph_sizes() const override { return lead().decode_graph_sizes(); }
  double decode_graph_capture_seconds() const override { return lead().decode_graph_capture_seconds(); }
  std::string device_fatal_error() override {  // any rank's failure stops every group
    for (size_t r = 0; r < owner_.ranks_.size(); ++r) {
      std::string e = owner_.ranks_[r].backend->fatal_error();
      if (!e.empty()) return fmt::format("rank {}: {}", r, e);
    }
    return {};
  }
  void set_has_work(bool has_work) override { owner_.set_has_work(g_, has_work); }
  int64_t progress() const override { return lead().progress(); }

 private:
  const DeepseekV3Model& lead() const { return *owner_.ranks_[size_t(owner_.lead(g_))].model; }
  DataParallelModel& owner_;
  int g_;
};

DataParallelModel::DataParallelModel(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends,
                                     int groups, WeightSource& weights, int64_t context_len, const LoadOptions& opt)
    : groups_(groups), threads_(int(backends.size())) {
  const int world = int(backends.size());
  DS_CHECK(groups >= 1 && world % groups == 0, "--dp-size {} must divide --tp-size {} with --enable-dp-attention",
           groups, world);
  DS_CHECK(cfg.num_attention_heads % (world / groups) == 0,
           "--tp-size {} / --dp-size {} = {} GPUs per attention group: {} attention heads do not divide", world, groups,
           world / groups, cfg.num_attention_heads);
  ranks_.resize(size_t(world));
  for (int r = 0; r < world; ++r) ranks_[size_t(r)].backend = std::move(backends[size_t(r)]);
  std::mutex load_mu;  // one rank loads at a time: the weight source is not thread-safe
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    LoadOptions lo = opt;
    lo.load_mtp = false;
    lo.mtp_weights = nullptr;
    lo.shard = ShardSpec{r, world, opt.shard.expert_parallel, groups};
    {
      std::lock_guard<std::mutex> lock(load_mu);
      k.model = std::make_unique<DeepseekV3Model>(cfg, *k.backend, weights, context_len, lo);
    }
    k.backend->synchronize();
  });
  pending_.assign(size_t(groups), nullptr);
  busy_.assign(size_t(groups), 0);
  done_.assign(size_t(groups), 0);
  results_.resize(size_t(groups));
  errors_.resize(size_t(groups));
  for (int g = 0; g < groups; ++g) runners_.push_back(std::make_unique<GroupRunner>(*this, g));
  coordinator_ = std::thread([this] { coordinate(); });
}

DataParallelModel::~DataParallelModel() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  coordinator_.join();
  // Device memory is freed on each rank's own thread (its device current).
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.backend->synchronize();
    k.last = {};
    k.cache = {};
    k.model.reset();
  });
}

ModelRunner& DataParallelModel::group(int g) { return *runners_[size_t(g)]; }

void DataParallelModel::allocate_caches(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.cache = k.model->allocate_cache(num_pages, page_size, false, dtype);
    k.backend->synchronize();
  });
}

void DataParallelModel::synchronize() {
  threads_.run_all([&](int r) {
    ranks_[size_t(r)].backend->bind_thread();
    ranks_[size_t(r)].backend->synchronize();
  });
}

int64_t DataParallelModel::rounds() const {
  std::lock_guard lk(mu_);
  return rounds_;
}

int64_t DataParallelModel::graph_rounds() const {
  std::lock_guard lk(mu_);
  return graph_rounds_;
}

bool DataParallelModel::capture_decode_graphs(int32_t trash_slot, const std::vector<int>& batch_sizes) {
  std::vector<char> ok(ranks_.size(), 0);
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    k.last = {};
    ok[size_t(r)] = k.model->capture_decode_graphs(k.cache, trash_slot, batch_sizes);
  });
  return ok[0] != 0;
}

ForwardOutput DataParallelModel::submit(int g, const ForwardBatch& batch, const LatentCache& cache) {
  DS_CHECK(cache.data.data() == ranks_[size_t(lead(g))].cache.data.data(),
           "data-parallel group {}: pass the group's cache (DataParallelModel::cache)", g);
  DS_CHECK(batch.num_tokens() > 0, "data-parallel group {}: a forward without tokens", g);
  ForwardOutput out;
  {
    std::unique_lock lk(mu_);
    DS_CHECK(!stop_, "data-parallel group {}: the model is shutting down", g);
    DS_CHECK(pending_[size_t(g)] == nullptr, "data-parallel group {}: a forward is already waiting", g);
    pending_[size_t(g)] = &batch;
    busy_[size_t(g)] = 1;
    done_[size_t(g)] = 0;
    cv_.notify_all();
    cv_.wait(lk, [&] { return done_[size_t(g)] != 0 || stop_; });
    DS_CHECK(done_[size_t(g)] != 0, "data-parallel group {}: the model shut down during a forward", g);
    done_[size_t(g)] = 0;
    if (std::exception_ptr e = std::exchange(errors_[size_t(g)], nullptr)) std::rethrow_exception(e);
    out = std::exchange(results_[size_t(g)], {});
  }
  ranks_[size_t(lead(g))].backend->bind_thread();  // the caller reads the outputs on the group's first device
  return out;
}

void DataParallelModel::set_has_work(int g, bool has_work) {
  {
    std::lock_guard lk(mu_);
    busy_[size_t(g)] = has_work || pending_[size_t(g)] != nullptr;
  }
  cv_.notify_all();
}

bool DataParallelModel::round_ready() const {
  bool any = false;
  for (int g = 0; g < groups_; ++g) {
    if (pending_[size_t(g)]) any = true;
    else if (busy_[size_t(g)]) return false;  // it will hand in a batch: wait for it
  }
  return any;
}

void DataParallelModel::coordinate() {
  ForwardBatch empty;  // what a group without work runs
  empty.query_start = {0};
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || round_ready(); });
    if (stop_) return;
    std::vector<const ForwardBatch*> batches(size_t(groups_), &empty);
    std::vector<int32_t> tokens(size_t(groups_), 0);
    std::vector<int> in_round;
    for (int g = 0; g < groups_; ++g) {
      const ForwardBatch* b = pending_[size_t(g)];
      if (!b) continue;
      // A batch that cannot run fails its own group only: the others' ranks would wait for it.
      try {
        ranks_[size_t(lead(g))].model->check_batch(*b, ranks_[size_t(lead(g))].cache.page_size);
      } catch (...) {
        errors_[size_t(g)] = std::current_exception();
        pending_[size_t(g)] = nullptr;
        done_[size_t(g)] = 1;
        cv_.notify_all();
        continue;
      }
      batches[size_t(g)] = b;
      tokens[size_t(g)] = b->num_tokens();
      in_round.push_back(g);
    }
    if (in_round.empty()) continue;
    lk.unlock();
    // Decode graphs when every group's batch has one (empty batches always do): all at the largest size.
    int graph_size = 0;
    bool replay = true;
    for (int g = 0; g < groups_; ++g) {
      const Rank& k = ranks_[size_t(lead(g))];
      const int size = k.model->decode_graph_size(*batches[size_t(g)], k.cache);
      replay = replay && size > 0;
      graph_size = std::max(graph_size, size);
    }
    if (!replay) graph_size = 0;
    std::exception_ptr err;
    try {
      const int per_group = ranks_per_group();
      threads_.run_all([&](int r) {
        Rank& k = ranks_[size_t(r)];
        k.backend->bind_thread();
        const ForwardBatch& b = *batches[size_t(r / per_group)];
        k.last = graph_size > 0 ? k.model->replay_decode_graph(b, graph_size)
                                : k.model->forward_all_groups(b, k.cache, tokens);
      });
    } catch (...) {
      err = std::current_exception();
    }
    lk.lock();
    for (int g : in_round) {
      results_[size_t(g)] = err ? ForwardOutput{} : ranks_[size_t(lead(g))].last;
      errors_[size_t(g)] = err;
      pending_[size_t(g)] = nullptr;
      done_[size_t(g)] = 1;
    }
    ++rounds_;
    if (graph_size > 0) ++graph_rounds_;
    cv_.notify_all();
  }
}

}  // namespace dsserve
