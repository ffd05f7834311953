// Admission against memory (see kv_admission.h).
#include "runtime/kv_admission.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

namespace dsserve {

void KvAdmission::order(RequestQueues& q) {
  if (opt_.schedule_policy == "lpm")
    order_by_prefix_match(q);
  else
    order_round_robin(q);
}

// fcfs, fairly: requests already started (partly prefilled, retracted) first, then the fresh ones
// taking turns by client (each client's first waiting request, in arrival order, then each
// client's second, ...), so that a client with many queued requests cannot hold back another's.
void KvAdmission::order_round_robin(RequestQueues& q) {
  std::deque<RequestPtr> ordered;
  std::vector<std::pair<size_t, RequestPtr>> fresh;  // (turn, request)
  std::unordered_map<std::string, size_t> turns;
  for (auto& r : q.waiting) {
    if (r->admitted_once || r->kv_len > 0 || !r->pages.pages.empty()) ordered.push_back(r);
    else fresh.push_back({turns[r->g.client]++, r});
  }
  if (turns.size() <= 1) return;  // one client: arrival order as it is
  std::stable_sort(fresh.begin(), fresh.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& [turn, r] : fresh) ordered.push_back(r);
  q.waiting = std::move(ordered);
}

// Longest prefix match first (among requests not yet started), stable.
void KvAdmission::order_by_prefix_match(RequestQueues& q) {
  std::vector<std::pair<int64_t, RequestPtr>> scored;
  std::deque<RequestPtr> started;
  for (auto& r : q.waiting) {
    if (!r->pages.pages.empty()) {
      started.push_back(r);
      continue;
    }
    std::vector<int32_t> pages, f = r->fill();
    int64_t m = radix_.match(f, int64_t(f.size()) - 1, pages);
    pool_.release(pages);
    scored.push_back({m, r});
  }
  std::stable_sort(scored.begin(), scored.end(), [](auto& a, auto& b) { return a.first > b.first; });
  q.waiting = started;
  for (auto& [m, r] : scored) q.waiting.push_back(r);
}

void KvAdmission::match_prefix(RequestState& r) {
  if (opt_.disable_radix_cache) return;
  std::vector<int32_t> f = r.fill();
  // Leave the last token to compute (its logits are needed), and every position whose input
  // logprob is asked for.
  int64_t limit = int64_t(f.size()) - 1;
  if (r.lp_start() >= 0 && !r.admitted_once) limit = std::min<int64_t>(limit, std::max<int64_t>(r.lp_start() - 1, 0));
  int64_t m = radix_.match(f, limit, r.pages.pages);
  r.pages.length = m;
  r.kv_len = m;
  if (!r.admitted_once) r.cached_tokens = int(std::min<int64_t>(m, int64_t(r.g.input_ids.size())));
  if (opt_.recompute_last_reused && m > 0) {
    r.kv_len = m - 1;
    r.discard_before = m;
  }
}

bool KvAdmission::shares_prefix_in_flight(const RequestState& r, const std::vector<RequestPtr>& batch) const {
  if (opt_.disable_radix_cache) return false;
  const int64_t threshold = std::max<int64_t>(pool_.page_size(), 16);
  const auto& a = r.g.input_ids;
  for (const RequestPtr& b : batch) {
    const auto& c = b->g.input_ids;
    const size_t n = std::min(a.size(), c.size());
    size_t common = 0;
    while (common < n && a[common] == c[common]) ++common;
    if (int64_t(common) >= threshold && b->kv_len + pool_.page_size() <= int64_t(common)) return true;
  }
  return false;
}

bool KvAdmission::reserve(RequestState& r, int64_t len) {
  if (r.pages.reserve(pool_, len)) return true;
  int64_t need = (len + pool_.page_size() - 1) / pool_.page_size() - int64_t(r.pages.pages.size());
  if (!opt_.disable_radix_cache) radix_.evict(need - pool_.num_free());
  return r.pages.reserve(pool_, len);
}

void KvAdmission::reserve_running(RequestQueues& q, int64_t extra) {
  for (size_t i = 0; i < q.running.size();) {
    RequestPtr r = q.running[i];
    if (reserve(*r, r->kv_len + extra)) {
      ++i;
      continue;
    }
    retract(q, q.running.back());
  }
}

void KvAdmission::retract(RequestQueues& q, RequestPtr r) {
  spdlog::debug("retracting request {} ({} tokens) to free KV pages", r->g.rid, r->fill_len());
  q.running.erase(std::find(q.running.begin(), q.running.end(), r));
  release(*r);
  q.waiting.push_front(r);
  ++retractions_;
}

void KvAdmission::release(RequestState& r) {
  r.pages.release_all(pool_);
  r.kv_len = 0;
  r.discard_before = 0;
  r.draft.tokens.clear();
  r.draft.parent.clear();
  r.draft.depth.clear();
}

void KvAdmission::cache_prefix(const RequestState& r, int64_t tokens) {
  if (opt_.disable_radix_cache) return;
  std::vector<int32_t> f = r.fill();
  f.resize(size_t(std::min<int64_t>(tokens, int64_t(f.size()))));
  radix_.insert(f, r.pages.pages);
}

}  // namespace dsserve
