// Tensor-parallel runner (see tensor_parallel.h): forwards, caches and graphs on all ranks together.
#include "parallel/tensor_parallel.h"

#include "core/error.h"

namespace dsserve {

namespace {
// The backends, once span (filled in: world 0 is all of them) is checked against their number.
std::vector<std::unique_ptr<Backend>> checked_span(std::vector<std::unique_ptr<Backend>> backends, RankSpan& span) {
  const int local_world = int(backends.size());
  if (span.world <= 0) span.world = local_world;
  DS_CHECK(span.first >= 0 && span.first + local_world <= span.world,
           "TensorParallelModel: ranks {}..{} of a group of {}", span.first, span.first + local_world - 1, span.world);
  return backends;
}
}  // namespace

TensorParallelModel::TensorParallelModel(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends,
                                         WeightSource& weights, int64_t context_len, const LoadOptions& opt,
                                         RankSpan span)
    : ranks_(cfg, checked_span(std::move(backends), span), weights, context_len,
             [&](int r, int) {
               LoadOptions lo = opt;
               lo.shard = ShardSpec{span.first + r, span.world, opt.shard.expert_parallel};
               return lo;
             },
             span.first) {}

void TensorParallelModel::check_lead_cache(const LatentCache& cache, bool mtp, const char* op) const {
  const LatentCache& mine = mtp ? ranks_.rank(0).mtp_cache : ranks_.rank(0).cache;
  DS_CHECK(cache.data.data() == mine.data.data(), "TensorParallelModel::{}: pass the cache from {}", op,
           mtp ? "allocate_mtp_cache" : "allocate_cache");
}

LatentCache& TensorParallelModel::allocate_cache(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  ranks_.allocate_caches(num_pages, page_size, dtype, /*mtp=*/false);
  return ranks_.rank(0).cache;
}

LatentCache& TensorParallelModel::allocate_mtp_cache(int64_t num_pages, int page_size, std::optional<DType> dtype) {
  ranks_.allocate_caches(num_pages, page_size, dtype, /*mtp=*/true);
  return ranks_.rank(0).mtp_cache;
}

ForwardOutput TensorParallelModel::forward(const ForwardBatch& batch) {
  ranks_.run_all([&](RankGroup::Rank& k, int) { k.last = k.model->forward(batch, k.cache); });
  return ranks_.rank(0).last;
}

ForwardOutput TensorParallelModel::forward(const ForwardBatch& batch, LatentCache& cache) {
  check_lead_cache(cache, false, "forward");
  return forward(batch);
}

ForwardOutput TensorParallelModel::forward_mtp(const ForwardBatch& batch, const HiddenRows& prev_hidden,
                                               LatentCache& mtp_cache) {
  check_lead_cache(mtp_cache, true, "forward_mtp");
  // Every rank holds the same final hidden states (they follow all-reduces): each gathers its own.
  ranks_.run_all([&](RankGroup::Rank& k, int) { k.last = k.model->forward_mtp(batch, prev_hidden, k.mtp_cache); });
  return ranks_.rank(0).last;
}

bool TensorParallelModel::capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) {
  check_lead_cache(cache, false, "capture_graphs");
  if (mtp_cache.data.defined()) check_lead_cache(mtp_cache, true, "capture_graphs");
  return ranks_.capture_graphs(plan);
}

void TensorParallelModel::move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src,
                                           const std::vector<int32_t>& dst) {
  const bool mtp = cache.data.data() == ranks_.rank(0).mtp_cache.data.data();
  check_lead_cache(cache, mtp, "move_cache_slots");
  ranks_.run_all([&](RankGroup::Rank& k, int) {
    Tensor s = k.backend->upload_i32(src, {int64_t(src.size())}), d = k.backend->upload_i32(dst, {int64_t(dst.size())});
    k.backend->move_cache_slots(mtp ? k.mtp_cache.data : k.cache.data, s, d);
  });
}

}  // namespace dsserve
