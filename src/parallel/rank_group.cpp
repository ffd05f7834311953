// The ranks of one process (see rank_group.h).
#include "parallel/rank_group.h"

#include <mutex>

#include "core/error.h"

namespace dsserve {

RankGroup::RankGroup(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends, WeightSource& weights,
                     int64_t context_len, const std::function<LoadOptions(int rank, int ranks)>& load_options, int first_rank)
    : first_rank_(first_rank), threads_(int(backends.size())) {
  ranks_.resize(backends.size());
  for (size_t r = 0; r < backends.size(); ++r) ranks_[r].backend = std::move(backends[r]);
  std::mutex load_mu;  // one rank loads at a time: the weight source is not thread-safe
  run_all([&](Rank& k, int r) {
    const LoadOptions lo = load_options(r, int(ranks_.size()));
    {
      std::lock_guard<std::mutex> lock(load_mu);
      k.model = std::make_unique<DeepseekV3Model>(cfg, *k.backend, weights, context_len, lo);
    }
    k.backend->synchronize();
  });
}

RankGroup::~RankGroup() {
  run_all([](Rank& k, int) {
    k.backend->synchronize();
    k.last = {};
    k.cache = {};
    k.mtp_cache = {};
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
    (mtp ? k.mtp_cache : k.cache) = k.model->allocate_cache(num_pages, page_size, mtp, dtype);
    k.backend->synchronize();
  });
}

bool RankGroup::capture_graphs(const GraphPlan& plan) {
  std::vector<char> ok(ranks_.size(), 0);
  run_all([&](Rank& k, int r) {
    k.last = {};
    ok[size_t(r)] = k.model->capture_graphs(plan, k.cache, k.mtp_cache);
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
