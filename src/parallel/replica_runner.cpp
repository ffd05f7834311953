// The runner of one replica (see replica_runner.h): forwards, caches and graphs on all ranks together.
#include "parallel/replica_runner.h"

#include "core/error.h"

namespace dsserve {

namespace {
// The backends, once span (filled in: world 0 is all of them) is checked against their number.
std::vector<std::unique_ptr<Backend>> checked_span(std::vector<std::unique_ptr<Backend>> backends, RankSpan& span) {
  const int local_world = int(backends.size());
  DS_CHECK(local_world >= 1, "ReplicaRunner: no backends");
  if (span.world <= 0) span.world = local_world;
  DS_CHECK(span.first >= 0 && span.first + local_world <= span.world,
           "ReplicaRunner: ranks {}..{} of a group of {}", span.first, span.first + local_world - 1, span.world);
  return backends;
}
}  // namespace

ReplicaRunner::ReplicaRunner(const ModelConfig& cfg, std::vector<std::unique_ptr<Backend>> backends,
                             WeightSource& weights, int64_t context_len, const LoadOptions& opt, RankSpan span)
    : ranks_(cfg, checked_span(std::move(backends), span), weights, context_len,
             [&](int r, int) {
               LoadOptions lo = opt;
               lo.shard = ShardSpec{span.first + r, span.world, opt.shard.expert_parallel};
               return lo;
             },
             span.first) {}

ReplicaRunner::ReplicaRunner(const ModelConfig& cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                             const LoadOptions& opt)
    : ranks_(cfg, backend, weights, context_len, opt) {}

bool ReplicaRunner::check_lead_cache(const LatentCache& cache, const char* op) const {
  RankModel& lead = *ranks_.rank(0).model;
  const void* data = cache.data.data();
  const bool target = data != nullptr && data == lead.cache(false).data.data();
  const bool mtp = data != nullptr && data == lead.cache(true).data.data();
  DS_CHECK(target || mtp, "ReplicaRunner::{}: pass a cache from make_cache", op);
  return mtp;
}

LatentCache ReplicaRunner::make_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) {
  ranks_.allocate_caches(num_pages, page_size, dtype, mtp);
  return ranks_.rank(0).model->cache(mtp);
}

ForwardOutput ReplicaRunner::forward(const ForwardBatch& batch) {
  ranks_.run_all([&](RankGroup::Rank& k, int) { k.last = k.model->forward(batch); });
  return ranks_.rank(0).last;
}

ForwardOutput ReplicaRunner::forward(const ForwardBatch& batch, LatentCache& cache) {
  DS_CHECK(!check_lead_cache(cache, "forward"), "ReplicaRunner::forward: pass the target's cache, not the MTP layer's");
  return forward(batch);
}

ForwardOutput ReplicaRunner::forward_mtp(const ForwardBatch& batch, const HiddenRows& prev_hidden,
                                         LatentCache& mtp_cache) {
  DS_CHECK(check_lead_cache(mtp_cache, "forward_mtp"), "ReplicaRunner::forward_mtp: pass the MTP layer's cache");
  // Every rank holds the same final hidden states (they follow all-reduces): each gathers its own.
  ranks_.run_all([&](RankGroup::Rank& k, int) { k.last = k.model->forward_mtp(batch, prev_hidden); });
  return ranks_.rank(0).last;
}

bool ReplicaRunner::capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) {
  DS_CHECK(!check_lead_cache(cache, "capture_graphs"), "ReplicaRunner::capture_graphs: the target's cache first");
  if (mtp_cache.data.defined())
    DS_CHECK(check_lead_cache(mtp_cache, "capture_graphs"), "ReplicaRunner::capture_graphs: the MTP layer's cache second");
  return ranks_.capture_graphs(plan);
}

void ReplicaRunner::move_cache_slots(LatentCache& cache, const std::vector<int32_t>& src,
                                     const std::vector<int32_t>& dst) {
  ranks_.move_cache_slots(check_lead_cache(cache, "move_cache_slots"), src, dst);
}

}  // namespace dsserve
