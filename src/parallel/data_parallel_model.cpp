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
  int64_t context_len() const override { return lead().context_len(); }
  Backend& backend() override { return *owner_.ranks_.rank(owner_.lead(g_)).backend; }
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override { return owner_.submit(g_, batch, cache); }
  // Caches and recording involve every group at once: DataParallelModel::allocate_caches and
  // DataParallelModel::capture_decode_graphs.
  LatentCache make_cache(int64_t, int, bool, std::optional<DType>) override {
    fail("data-parallel group {}: its cache comes from DataParallelModel::allocate_caches", g_);
  }
  bool capture_graphs(const GraphPlan&, LatentCache&, LatentCache&) override { return false; }
  RecordedGraphs recorded_graphs() const override { return owner_.ranks_.rank(owner_.lead(g_)).model->recorded_graphs(); }
  std::string device_fatal_error() override { return owner_.ranks_.fatal_error(); }  // any rank's stops every group
  void synchronize() override { owner_.synchronize(); }
  void set_has_work(bool has_work) override { owner_.set_has_work(g_, has_work); }
  int64_t progress() const override { return lead().progress(); }

 private:
  const DeepseekV3Model& lead() const { return owner_.ranks_.rank(owner_.lead(g_)).model->model(); }
  DataParallelModel& owner_;
  int g_;
};

namespace {
// The backends, once the split is checked: groups divide the ranks, and heads the ranks of a group.
std::vector<std::unique_ptr<Backend>> checked_split(std::vector<std::unique_ptr<Backend>> backends, int groups,
                                                    const ModelConfig& cfg) {
  const int world = int(backends.size());
  DS_CHECK(groups >= 1 && world % groups == 0, "--dp-size {} must divide --tp-size {} with --enable-dp-attention",
           groups, world);
  DS_CHECK(cfg.num_attention_heads % (world / groups) == 0,
           "--tp-size {} / --dp-size {} = {} GPUs per attention group: {} attention heads do not divide", world, groups,
           world / groups, cfg.num_attention_heads);
  return backends;
}
}  // namespace

DataParallelModel::DataParallelModel(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends,
                                     int groups, WeightSource& weights, int64_t context_len, const LoadOptions& opt)
    : groups_(groups),
      ranks_(cfg, checked_split(std::move(backends), groups, cfg), weights, context_len, [&](int r, int world) {
        LoadOptions lo = opt;
        lo.load_mtp = false;
        lo.mtp_weights = nullptr;
        lo.shard = ShardSpec{r, world, opt.shard.expert_parallel, groups};
        return lo;
      }) {
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
  // ranks_ frees device memory on each rank's own thread.
}

ModelRunner& DataParallelModel::group(int g) { return *runners_[size_t(g)]; }

void DataParallelModel::allocate_caches(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  ranks_.allocate_caches(num_pages, page_size, dtype, /*mtp=*/false);
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
  GraphPlan plan;
  plan.trash_slot = trash_slot;
  plan.decode_sizes = batch_sizes;
  return ranks_.capture_graphs(plan);
}

ForwardOutput DataParallelModel::submit(int g, const ForwardBatch& batch, const LatentCache& cache) {
  DS_CHECK(cache.data.data() == ranks_.rank(lead(g)).model->cache().data.data(),
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
  ranks_.rank(lead(g)).backend->bind_thread();  // the caller reads the outputs on the group's first device
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
        ranks_.rank(lead(g)).model->model().check_batch(*b, ranks_.rank(lead(g)).model->cache().page_size);
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
      const RankGroup::Rank& k = ranks_.rank(lead(g));
      const int size = k.model->decode_graph_size(*batches[size_t(g)]);
      replay = replay && size > 0;
      graph_size = std::max(graph_size, size);
    }
    if (!replay) graph_size = 0;
    std::exception_ptr err;
    try {
      const int per_group = ranks_per_group();
      ranks_.run_all([&](RankGroup::Rank& k, int r) {
        const ForwardBatch& b = *batches[size_t(r / per_group)];
        k.last = graph_size > 0 ? k.model->replay_decode_graph(b, graph_size)
                                : k.model->forward_all_groups(b, tokens);
      });
    } catch (...) {
      err = std::current_exception();
    }
    lk.lock();
    for (int g : in_round) {
      results_[size_t(g)] = err ? ForwardOutput{} : ranks_.rank(lead(g)).last;
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
