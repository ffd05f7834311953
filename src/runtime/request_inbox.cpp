// The engine's inbox (see request_inbox.h).
#include "runtime/request_inbox.h"

#include <algorithm>

#include "backend/sampling_math.h"

namespace dsserve {

void RequestInbox::submit(std::vector<Submission> group) {
  const int64_t k = int64_t(group.size());
  if (k > lim_.max_queued_requests)
    refuse(EngineErrorKind::TooManySequences,
           "{} sequences in one request exceed the {} the server can queue (--max-queued-requests)", k,
           lim_.max_queued_requests);
  std::vector<RequestPtr> reqs;
  std::unordered_set<std::string> rids;
  for (Submission& s : group) {
    check_request(s.request);
    if (!rids.insert(s.request.rid).second)
      refuse(EngineErrorKind::DuplicateRequestId, "request id '{}' is given to two requests of one batch",
             s.request.rid);
    auto r = std::make_shared<RequestState>();
    r->g = std::move(s.request);
    r->cb = std::move(s.on_output);
    reqs.push_back(std::move(r));
  }
  if (reqs.empty()) return;
  const std::string& client = reqs[0]->g.client;
  {
    std::lock_guard lk(mu_);
    if (stopping_) refuse(EngineErrorKind::ShuttingDown, "request {}: the server is shutting down", reqs[0]->g.rid);
    if (!fatal_.empty())
      refuse(EngineErrorKind::DeviceFailed, "request {}: the device failed ({}); the server cannot generate",
             reqs[0]->g.rid, fatal_);
    for (auto& r : reqs)
      if (live_rids_.count(r->g.rid))
        refuse(EngineErrorKind::DuplicateRequestId, "request id '{}' is already in use by a request in flight",
               r->g.rid);
    check_queue_room(client, k);
    for (auto& r : reqs) {
      live_rids_.insert(r->g.rid);
      ++inbox_by_client_[r->g.client];
      inbox_.push_back(std::move(r));
    }
  }
  cv_.notify_one();
}

// What makes a request impossible to run, whatever the load: EngineError(InvalidRequest).
void RequestInbox::check_request(const GenerationRequest& g) const {
  const ModelConfig& cfg = *lim_.config;
  auto invalid = [&](const std::string& field, const std::string& msg) {
    throw EngineError(EngineErrorKind::InvalidRequest, fmt::format("request {}: {}", g.rid, msg), field);
  };
  if (g.input_ids.empty()) invalid("input_ids", "the prompt is empty");
  for (size_t i = 0; i < g.input_ids.size(); ++i)
    if (g.input_ids[i] < 0 || g.input_ids[i] >= cfg.vocab_size)
      invalid("input_ids", fmt::format("input_ids[{}] = {} is outside the vocabulary [0, {})", i, g.input_ids[i],
                                       cfg.vocab_size));
  g.sampling.validate(cfg.vocab_size);
  if (g.top_logprobs_num < 0 || g.top_logprobs_num > sampling::kMaxTopLogprobs)
    invalid("top_logprobs_num", fmt::format("top_logprobs_num {} (expected 0 to {})", g.top_logprobs_num,
                                            sampling::kMaxTopLogprobs));
  const int64_t total = int64_t(g.input_ids.size()) + g.sampling.max_new_tokens;
  if (total > lim_.context_len)
    invalid("max_new_tokens", fmt::format("{} prompt tokens + {} max_new_tokens = {} exceed the context length {}",
                                          g.input_ids.size(), g.sampling.max_new_tokens, total, lim_.context_len));
  const int64_t pages_needed = (total + lim_.spec_margin + lim_.page_size - 1) / lim_.page_size;
  if (pages_needed > lim_.num_pages)
    invalid("max_new_tokens", fmt::format("{} tokens need {} KV pages but the cache has {} in all "
                                          "(--max-total-tokens)", total, pages_needed, lim_.num_pages));
}

// Whether k more requests of `client` fit the queue (mu_ held): below --max-queued-requests, or,
// when the queue is full, while the client holds less than its fair share of it (the limit over
// the clients with queued work) and the queue stays under twice the limit. QueueFull otherwise.
void RequestInbox::check_queue_room(const std::string& client, int64_t k) const {
  const int64_t limit = lim_.max_queued_requests;
  const int64_t total = int64_t(inbox_.size() + waiting_count_);
  if (total + k <= limit) return;
  std::unordered_map<std::string, int64_t> held = waiting_by_client_;
  for (auto& [c, n] : inbox_by_client_) held[c] += n;
  int64_t clients = 0;
  for (auto& [c, n] : held) clients += n > 0;
  auto mine = held.find(client);
  const int64_t own = mine == held.end() ? 0 : mine->second;
  if (own == 0) ++clients;
  const int64_t share = limit / std::max<int64_t>(clients, 1);
  if (own + k <= share && total + k <= 2 * limit) return;
  refuse(EngineErrorKind::QueueFull, "queue full: {} requests are waiting (limit {}, {} of them from this client); "
         "retry later", total, limit, own);
}

void RequestInbox::abort(const std::string& rid) {
  {
    std::lock_guard lk(mu_);
    aborts_.push_back(rid);
  }
  cv_.notify_one();
}

void RequestInbox::flush_cache() {
  {
    std::lock_guard lk(mu_);
    flush_ = true;
  }
  cv_.notify_one();
}

void RequestInbox::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
}

std::optional<RequestInbox::Taken> RequestInbox::take(bool scheduler_has_work, const std::function<void()>& on_idle) {
  std::unique_lock lk(mu_);
  auto ready = [&] { return stopping_ || !inbox_.empty() || !aborts_.empty() || flush_ || scheduler_has_work; };
  if (!ready()) {
    lk.unlock();
    on_idle();
    lk.lock();
  }
  cv_.wait(lk, ready);
  if (stopping_) return std::nullopt;
  Taken t;
  // The taken requests count as waiting until the scheduler reports its queue (set_waiting), so
  // check_queue_room sees them between the two.
  waiting_count_ += inbox_.size();
  for (auto& [c, n] : inbox_by_client_) waiting_by_client_[c] += n;
  t.incoming.swap(inbox_);
  inbox_by_client_.clear();
  t.aborts.swap(aborts_);
  t.flush = std::exchange(flush_, false);
  return t;
}

void RequestInbox::release_rid(const std::string& rid) {
  std::lock_guard lk(mu_);
  live_rids_.erase(rid);
}

void RequestInbox::set_waiting(const std::deque<RequestPtr>& waiting) {
  std::unordered_map<std::string, int64_t> by_client;
  for (const RequestPtr& r : waiting) ++by_client[r->g.client];
  std::lock_guard lk(mu_);
  waiting_count_ = waiting.size();
  waiting_by_client_ = std::move(by_client);
}

void RequestInbox::set_fatal(const std::string& reason) {
  std::lock_guard lk(mu_);
  fatal_ = reason;
}

std::string RequestInbox::fatal() const {
  std::lock_guard lk(mu_);
  return fatal_;
}

}  // namespace dsserve
