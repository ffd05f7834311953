// The ranks of one process (see rank_group.h).
#include "parallel/rank_group.h"

#include <mutex>

#include "core/error.h"

namespace dsserve {

RankGroup::RankGroup(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, WeightSource& weights,
                     int64_t context_len, const LoadOptionsFor& load_options, int first_rank)
    : owned_(std::move(backends)), first_rank_(first_rank), threads_(int(owned_.size())) {
  ranks_.resize(owned_.size());
  for (size_t r = 0; r < owned_.size(); ++r) ranks_[r].backend = owned_[r].get();
  load(cfg, weights, context_len, load_options);
}

RankGroup::RankGroup(const ModelConfig& cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                     const LoadOptions& opt)
    : threads_(1) {
  ranks_.resize(1);
  ranks_[0].backend = &backend;
  load(cfg, weights, context_len, [&](int, int) { return opt; });
}

void RankGroup::load(const ModelConfig& cfg, WeightSource& weights, int64_t context_len,
                     const LoadOptionsFor& load_options) {
  std::mutex load_mu;  // one rank loads at a time: the weight source is not thread-safe
  run_all([&](Rank& k, int r) {
    const LoadOptions lo = load_options(r, int(ranks_.size()));
    {
      std::lock_guard<std::mutex> lock(load_mu);
      k.model = std::make_unique<RankModel>(cfg, *k.backend, weights, context_len, lo);
    }
    k.backend->synchronize();
  });
}

RankGroup::~RankGroup() {
  run_all([](Rank& k, int) {
    k.backend->synchronize();
    k.last = {};
    k.model.reset();
  });
}

void RankGroup::run_all(const std::function<void(Rank&, int)>& job) {
  threads_.run_all([&](int r) {
    Rank& k = ranks_[size_t(r)];
    k.backend->bind_thread();
    job(k, r);
  });
}

void RankGroup::allocate_caches(int64_t num_pages, int page_size, std::optional<DType> dtype, bool mtp) {
  run_all([&](Rank& k, int) {
    k.model->allocate_cache(num_pages, page_size, mtp, dtype);
    k.backend->synchronize();
  });
}

void RankGroup::move_cache_slots(bool mtp, const std::vector<int32_t>& src, const std::vector<int32_t>& dst) {
  run_all([&](Rank& k, int) { k.model->move_cache_slots(mtp, src, dst); });
}

bool RankGroup::capture_graphs(const GraphPlan& plan) {
  std::vector<char> ok(ranks_.size(), 0);
  run_all([&](Rank& k, int r) {
    k.last = {};
    ok[size_t(r)] = k.model->capture_graphs(plan);
  });
  return ok[0] != 0;
}

void RankGroup::synchronize() {
  run_all([](Rank& k, int) { k.backend->synchronize(); });
}

std::string RankGroup::fatal_error() {
  for (size_t r = 0; r < ranks_.size(); ++r) {
    std::string e = ranks_[r].backend->fatal_error();
    if (!e.empty()) return fmt::format("rank {}: {}", first_rank_ + int(r), e);
  }
  return {};
}

}  // namespace dsserve
