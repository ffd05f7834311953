// Admission against memory: the order waiting requests are admitted in (fcfs, fairly over clients,
// or longest prefix match), prefixes reused from the radix cache, pages reserved for the tokens a
// step writes (evicting unreferenced prefixes first), and retraction of the newest running requests
// when pages run out. It runs no model.
#pragma once
#include <cstdint>
#include <string>

#include "runtime/page_pool.h"
#include "runtime/radix_cache.h"
#include "runtime/request_queues.h"

namespace dsserve {

struct AdmissionOptions {
  std::string schedule_policy = "fcfs";  // fcfs | lpm
  bool disable_radix_cache = false;
  // Speculative decoding: the MTP layer needs the target's hidden state at the last reused
  // position, so that token of a reused prefix is computed again (its latent not written).
  bool recompute_last_reused = false;
};

class KvAdmission {
 public:
  KvAdmission(PagePool& pool, AdmissionOptions opt) : pool_(pool), opt_(std::move(opt)), radix_(pool) {}

  PagePool& pool() { return pool_; }
  int page_size() const { return pool_.page_size(); }
  bool keeps_prefixes() const { return !opt_.disable_radix_cache; }
  int64_t retractions() const { return retractions_; }

  // Orders q.waiting by the schedule policy.
  void order(RequestQueues& q);
  // A fresh request's prompt prefix found in the radix cache: its pages, kv_len and cached_tokens.
  void match_prefix(RequestState& r);
  // Whether a fresh request's prompt starts with a stretch (at least a page, and 16 tokens) that a
  // request of `batch` is computing now: it waits one round and then finds those pages in the
  // prefix cache instead of computing them again (parallel samples, shared system prompts).
  bool shares_prefix_in_flight(const RequestState& r, const std::vector<RequestPtr>& batch) const;
  // Pages for len tokens of r (evicting cached prefixes if needed); false when the pool is short.
  bool reserve(RequestState& r, int64_t len);
  // Gives every running request `extra` more cache positions, retracting the newest when short.
  void reserve_running(RequestQueues& q, int64_t extra);
  void release(RequestState& r);
  // Caches r's first `tokens` tokens (whole pages) for later prefix matches.
  void cache_prefix(const RequestState& r, int64_t tokens);
  void flush() { radix_.clear(); }

 private:
  void order_round_robin(RequestQueues& q);
  void order_by_prefix_match(RequestQueues& q);
  void retract(RequestQueues& q, RequestPtr r);

  PagePool& pool_;
  AdmissionOptions opt_;
  RadixCache radix_;
  int64_t retractions_ = 0;
};

}  // namespace dsserve
