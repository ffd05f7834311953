// The scheduler (see scheduler.h): one thread, one loop. Each iteration takes in new requests and
// aborts, then runs either a prefill batch (chunked, admitted against free pages, after a prefix
// match in the radix cache) or a decode batch (one token for every running request, or with
// speculative decoding one verification of its drafts; the newest requests are retracted when pages
// run out), chooses the next tokens of the whole batch in one Backend::sample call (only the tokens
// and the log-probabilities asked for come back to the host), and sends each request its new tokens.
#include "runtime/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "backend/sampling_math.h"
#include "core/error.h"
#include "runtime/batch_builder.h"
#include "runtime/constrained_rows.h"
#include "runtime/radix_cache.h"
#include "runtime/sampler.h"

namespace dsserve {

namespace {

// Host float32 rows of a backend tensor [R, C].
std::vector<std::vector<float>> host_rows(Backend& be, const Tensor& t) {
  Tensor h = be.to_host_f32(t);
  int64_t R = h.size(0), C = h.size(1);
  std::vector<std::vector<float>> rows(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) rows[i].assign(h.ptr<float>() + i * C, h.ptr<float>() + (i + 1) * C);
  return rows;
}

// Rows `which` of t [R, C] (t itself when they are all its rows in order).
Tensor select_rows(Backend& be, const Tensor& t, const std::vector<int32_t>& which) {
  bool all = int64_t(which.size()) == t.size(0);
  for (size_t i = 0; all && i < which.size(); ++i) all = which[i] == int32_t(i);
  return all ? t : be.gather_rows(t, be.upload_i32(which, {int64_t(which.size())}));
}

class Scheduler final : public Engine {
 public:
  Scheduler(ModelRunner& model, LatentCache& cache, PagePool& pool, const SchedulerOptions& opt)
      : model_(model), cache_(cache), pool_(pool), opt_(opt), radix_(pool),
        trash_slot_(int32_t(pool.num_pages() * pool.page_size())) {
    DS_CHECK(cache.num_pages >= cache_pages_for(pool), "latent cache has {} pages; the pool of {} needs {}",
             cache.num_pages, pool.num_pages(), cache_pages_for(pool));
    if (opt_.speculative.enabled()) {
      DS_CHECK(opt_.mtp_cache && opt_.mtp_cache->num_pages >= cache_pages_for(pool) &&
                   opt_.mtp_cache->page_size == pool.page_size(),
               "speculative decoding needs an MTP cache with the pool's page size and {} pages", cache_pages_for(pool));
      eagle_.emplace(model_, *opt_.mtp_cache, trash_slot_, opt_.speculative);
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~Scheduler() override { shutdown(); }

  void submit(GenerationRequest g, OutputCallback cb) override {
    std::vector<Submission> one;
    one.push_back({std::move(g), std::move(cb)});
    submit_all(std::move(one));
  }

  void submit_all(std::vector<Submission> group) override {
    const int64_t k = int64_t(group.size());
    if (k > opt_.max_queued_requests)
      refuse(EngineErrorKind::TooManySequences,
             "{} sequences in one request exceed the {} the server can queue (--max-queued-requests)", k,
             opt_.max_queued_requests);
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

  int64_t max_queued_requests() const override { return opt_.max_queued_requests; }

  void abort(const std::string& rid) override {
    {
      std::lock_guard lk(mu_);
      aborts_.push_back(rid);
    }
    cv_.notify_one();
  }

  void flush_cache() override {
    {
      std::lock_guard lk(mu_);
      flush_ = true;
    }
    cv_.notify_one();
  }

  EngineStats stats() const override {
    EngineStats s;
    {
      std::lock_guard lk(stats_mu_);
      s = stats_;
    }
    const int64_t started = step_started_ns_.load();
    if (started != 0)
      s.current_step_s = double(std::chrono::steady_clock::now().time_since_epoch().count() - started) *
                         std::chrono::steady_clock::period::num / std::chrono::steady_clock::period::den;
    s.progress = forwards_done_.load(std::memory_order_relaxed) + model_.progress();
    return s;
  }
  int64_t context_length() const override { return model_.context_len(); }
  int vocab_size() const override { return model_.config().vocab_size; }

  void shutdown() override {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // What makes a request impossible to run, whatever the load: EngineError(InvalidRequest).
  void check_request(const GenerationRequest& g) const {
    const ModelConfig& cfg = model_.config();
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
    if (total > model_.context_len())
      invalid("max_new_tokens", fmt::format("{} prompt tokens + {} max_new_tokens = {} exceed the context length {}",
                                            g.input_ids.size(), g.sampling.max_new_tokens, total, model_.context_len()));
    const int64_t pages_needed = (total + spec_margin() + pool_.page_size() - 1) / pool_.page_size();
    if (pages_needed > pool_.num_pages())
      invalid("max_new_tokens", fmt::format("{} tokens need {} KV pages but the cache has {} in all "
                                            "(--max-total-tokens)", total, pages_needed, pool_.num_pages()));
  }

  // Whether k more requests of `client` fit the queue (mu_ held): below --max-queued-requests, or,
  // when the queue is full, while the client holds less than its fair share of it (the limit over
  // the clients with queued work) and the queue stays under twice the limit. QueueFull otherwise.
  void check_queue_room(const std::string& client, int64_t k) const {
    const int64_t limit = opt_.max_queued_requests;
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

  ForwardOutput forward(const ForwardBatch& b) {
    ++forwards_;
    forwards_done_.fetch_add(1, std::memory_order_relaxed);
    return model_.forward(b, cache_);
  }

  // Extra cache positions a request may touch beyond its tokens in one round: the drafts it
  // verifies, then (all accepted) the MTP entries of the next round's drafts.
  int64_t spec_margin() const { return eagle_ ? eagle_->cache_margin() : 0; }

  // ---------------------------------------------------------------- the loop
  void loop() {
    bool last_was_prefill = false;
    while (take_inbox()) {
      const int64_t forwards_before = forwards_;
      bool decode_due = last_was_prefill && !running_.empty();
      step_started_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count());
      try {
        if (!decode_due && run_prefill()) {
          last_was_prefill = true;
        } else {
          if (!running_.empty()) eagle_ ? run_speculative_decode() : run_decode();
          last_was_prefill = false;
        }
      } catch (const std::exception& e) {
        // A failed forward must not take the server down: fail the requests of that batch.
        spdlog::error("scheduler: forward failed: {}", e.what());
        for (auto& r : std::vector<RequestPtr>(batch_)) finish(r, {"abort", {}, 0, std::string("internal error: ") + e.what()});
        // A device that faulted runs nothing more: fail everything, refuse new work, and say why
        // (the server's watchdog ends the process with this reason).
        std::string fatal = model_.device_fatal_error();
        if (!fatal.empty()) {
          spdlog::critical("scheduler: the device failed: {}", fatal);
          {
            std::lock_guard lk(mu_);
            fatal_ = fatal;
          }
          batch_.clear();
          for (auto& r : std::vector<RequestPtr>(running_)) finish(r, {"abort", {}, 0, "device failed: " + fatal});
          for (auto& r : std::vector<RequestPtr>(waiting_.begin(), waiting_.end()))
            finish(r, {"abort", {}, 0, "device failed: " + fatal});
          running_.clear();
          waiting_.clear();
        }
      }
      step_started_ns_.store(0);
      batch_.clear();
      publish_stats();
      if (forwards_ == forwards_before) model_.set_has_work(false);  // nothing ran: do not hold other groups
    }
    model_.set_has_work(false);  // stopped: runs no more forwards
    for (auto& r : std::vector<RequestPtr>(running_)) finish(r, {"abort", {}, 0, "server shutting down"});
    for (auto& r : std::vector<RequestPtr>(waiting_.begin(), waiting_.end())) finish(r, {"abort", {}, 0, "server shutting down"});
    radix_.clear();
  }

  // Moves new requests in, applies aborts and flushes; blocks while idle. False when stopping.
  bool take_inbox() {
    std::unique_lock lk(mu_);
    auto ready = [&] {
      return stopping_ || !inbox_.empty() || !aborts_.empty() || flush_ || !waiting_.empty() || !running_.empty();
    };
    if (!ready()) {
      lk.unlock();
      model_.set_has_work(false);  // idle until a request comes
      lk.lock();
    }
    cv_.wait(lk, ready);
    if (stopping_) return false;
    std::vector<RequestPtr> incoming;
    incoming.swap(inbox_);
    inbox_by_client_.clear();
    std::vector<std::string> aborts;
    aborts.swap(aborts_);
    bool flush = std::exchange(flush_, false);
    lk.unlock();
    for (auto& r : incoming) {  // submit() keeps rids unique among the requests in flight
      by_rid_[r->g.rid] = r;
      waiting_.push_back(std::move(r));
    }
    for (const std::string& rid : aborts) {
      auto it = by_rid_.find(rid);
      if (it != by_rid_.end()) finish(it->second, {"abort", {}, 0, "aborted"});
    }
    if (flush) radix_.clear();
    set_waiting_count();
    model_.set_has_work(!waiting_.empty() || !running_.empty());
    return true;
  }

  // ---------------------------------------------------------------- pages
  bool reserve(RequestState& r, int64_t len) {
    if (r.pages.reserve(pool_, len)) return true;
    int64_t need = (len + pool_.page_size() - 1) / pool_.page_size() - int64_t(r.pages.pages.size());
    if (!opt_.disable_radix_cache) radix_.evict(need - pool_.num_free());
    return r.pages.reserve(pool_, len);
  }

  void release_pages(RequestState& r) {
    r.pages.release_all(pool_);
    r.kv_len = 0;
    r.discard_before = 0;
    r.draft.tokens.clear();
    r.draft.parent.clear();
    r.draft.depth.clear();
  }

  void match_prefix(RequestState& r) {
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
    // The MTP layer needs the target's hidden state at the last reused position: recompute that
    // token without writing its (already cached) latent.
    if (eagle_ && m > 0) {
      r.kv_len = m - 1;
      r.discard_before = m;
    }
  }

  // ---------------------------------------------------------------- prefill
  // Admits waiting requests (continuing a partly prefilled one first) up to the token budget and
  // runs one forward over their next chunks. False when nothing could be admitted.
  bool run_prefill() {
    if (waiting_.empty()) return false;
    if (opt_.schedule_policy == "lpm") order_by_prefix_match();
    else order_round_robin();
    int64_t budget = opt_.max_prefill_tokens > 0 ? opt_.max_prefill_tokens : INT64_MAX;
    if (opt_.chunked_prefill_size > 0) budget = std::min<int64_t>(budget, opt_.chunked_prefill_size);
    std::vector<SequenceChunk> chunks;
    for (auto it = waiting_.begin(); it != waiting_.end() && budget > 0;) {
      RequestPtr r = *it;
      if (int(running_.size() + batch_.size()) >= opt_.max_running_requests) break;
      const bool fresh = r->kv_len == 0 && r->pages.pages.empty();
      if (fresh && shares_prefix_in_flight(*r)) {  // n > 1, a shared system prompt: reuse, do not recompute
        ++it;
        continue;
      }
      if (fresh) match_prefix(*r);
      const int64_t len = r->fill_len(), take = std::min<int64_t>(budget, len - r->kv_len);
      if (!reserve(*r, r->kv_len + take + spec_margin())) {
        if (fresh) release_pages(*r);  // drop a prefix match we cannot use now
        break;                         // no room: wait for pages (do not overtake)
      }
      std::vector<int32_t> f = r->fill();
      SequenceChunk c{&r->pages, r->kv_len, std::vector<int32_t>(f.begin() + r->kv_len, f.begin() + r->kv_len + take), {}};
      c.discard_before = r->discard_before;
      for (int64_t p = r->kv_len; p < r->kv_len + take; ++p)
        if (wants_input_logprob(*r, p) || p == len - 1) c.logit_offsets.push_back(int32_t(p - r->kv_len));
      chunks.push_back(std::move(c));
      batch_.push_back(r);
      budget -= take;
      it = waiting_.erase(it);
    }
    if (batch_.empty()) return false;
    BatchLayout layout{pool_.page_size(), AttentionMode::Expanded, 0, trash_slot_};
    ForwardOutput fo = forward(build_forward_batch(chunks, layout));
    Backend& be = model_.backend();
    std::vector<std::vector<float>> hidden = eagle_ ? host_rows(be, fo.hidden) : decltype(hidden){};

    // The logits rows, in chunk order, are the last position of every request whose prompt is now
    // complete (its first token is chosen on the device) and the positions whose input logprobs
    // were asked for (read back to the host).
    std::vector<int32_t> last_rows, logprob_rows;
    std::vector<RequestState*> completing;
    int32_t row = 0;
    for (size_t i = 0; i < batch_.size(); ++i) {
      RequestState& r = *batch_[i];
      for (int32_t off : chunks[i].logit_offsets) {
        const int64_t p = chunks[i].prefix_len + off;
        if (wants_input_logprob(r, p)) logprob_rows.push_back(row);
        if (p == r.fill_len() - 1) last_rows.push_back(row), completing.push_back(&r);
        ++row;
      }
    }
    std::vector<std::vector<float>> logprob_logits;
    if (!logprob_rows.empty()) logprob_logits = host_rows(be, select_rows(be, fo.logits, logprob_rows));
    std::vector<SampledToken> first;
    if (!completing.empty()) first = choose(select_rows(be, fo.logits, last_rows), completing);

    size_t logprob_row = 0, hidden_row = 0;
    std::vector<RequestPtr> completed, continuing;
    std::vector<std::vector<DraftRow>> draft_rows;
    std::vector<float> draft_hidden;
    for (size_t i = 0; i < batch_.size(); ++i) {
      RequestPtr r = batch_[i];
      const int64_t start = chunks[i].prefix_len, n = int64_t(chunks[i].tokens.size()), len = r->fill_len();
      bool complete = false;
      for (int32_t off : chunks[i].logit_offsets) {
        const int64_t p = start + off;
        if (wants_input_logprob(*r, p)) {
          const std::vector<float>& lg = logprob_logits[logprob_row++];
          int32_t next = r->g.input_ids[p + 1];
          r->input_lp.push_back({token_logprob(lg, next), next});
          r->input_top.push_back(top_logprobs(lg, r->g.top_logprobs_num));
        }
        if (p == len - 1) complete = true;
      }
      r->kv_len = start + n;
      if (complete) {
        r->output_ids.push_back(first[completed.size()].token);
        r->admitted_once = true;
        completed.push_back(r);
      } else {
        continuing.push_back(r);
      }
      if (eagle_) collect_prefill_draft_rows(*r, start, n, hidden, hidden_row, draft_rows, draft_hidden);
      hidden_row += size_t(n);
    }
    if (eagle_) {
      std::vector<RequestState*> reqs;
      for (auto& r : batch_) reqs.push_back(r.get());
      auto last = eagle_->extend(reqs, draft_rows, draft_hidden);
      std::vector<RequestState*> drafting;
      std::vector<EagleWorker::LastRow> drafting_last;
      for (size_t i = 0; i < batch_.size(); ++i)
        if (std::find(completed.begin(), completed.end(), batch_[i]) != completed.end()) {
          drafting.push_back(batch_[i].get());
          drafting_last.push_back(std::move(last[i]));
        }
      if (!drafting.empty()) eagle_->draft(drafting, std::move(drafting_last));
    }
    for (size_t i = 0; i < completed.size(); ++i) {
      RequestPtr r = completed[i];
      r->discard_before = 0;
      if (!opt_.disable_radix_cache) {
        std::vector<int32_t> f = r->fill();
        f.resize(size_t(r->kv_len));
        radix_.insert(f, r->pages.pages);
      }
      running_.push_back(r);
      deliver(r, r->output_ids.size() - 1, std::span(&first[i], 1));
    }
    waiting_.insert(waiting_.begin(), continuing.begin(), continuing.end());
    return true;
  }

  // Whether a fresh request's prompt starts with a stretch (at least a page, and 16 tokens) that a
  // request of this prefill batch is computing now: it waits one round and then finds those pages
  // in the prefix cache instead of computing them again (parallel samples, shared system prompts).
  bool shares_prefix_in_flight(const RequestState& r) const {
    if (opt_.disable_radix_cache) return false;
    const int64_t threshold = std::max<int64_t>(pool_.page_size(), 16);
    const auto& a = r.g.input_ids;
    for (const RequestPtr& b : batch_) {
      const auto& c = b->g.input_ids;
      const size_t n = std::min(a.size(), c.size());
      size_t common = 0;
      while (common < n && a[common] == c[common]) ++common;
      if (int64_t(common) >= threshold && b->kv_len + pool_.page_size() <= int64_t(common)) return true;
    }
    return false;
  }

  bool wants_input_logprob(const RequestState& r, int64_t p) const {
    const int64_t lp0 = r.lp_start();
    return !r.admitted_once && lp0 >= 0 && p + 1 >= std::max<int64_t>(lp0, 1) && p + 1 < int64_t(r.g.input_ids.size());
  }

  // MTP rows of a prefill chunk [start, start + n): position t pairs the target's hidden state at t
  // with token t + 1, which is always known: the next prompt token, or the token just sampled.
  void collect_prefill_draft_rows(const RequestState& r, int64_t start, int64_t n,
                                  const std::vector<std::vector<float>>& hidden, size_t hidden_row,
                                  std::vector<std::vector<DraftRow>>& rows, std::vector<float>& hid) {
    std::vector<int32_t> f = r.fill();
    std::vector<DraftRow> out;
    for (int64_t t = start; t < start + n; ++t) {
      out.push_back({t, f[size_t(t + 1)]});
      const auto& h = hidden[hidden_row + size_t(t - start)];
      hid.insert(hid.end(), h.begin(), h.end());
    }
    rows.push_back(std::move(out));
  }

  // fcfs, fairly: requests already started (partly prefilled, retracted) first, then the fresh ones
  // taking turns by client (each client's first waiting request, in arrival order, then each
  // client's second, ...), so that a client with many queued requests cannot hold back another's.
  void order_round_robin() {
    std::deque<RequestPtr> ordered;
    std::vector<std::pair<size_t, RequestPtr>> fresh;  // (turn, request)
    std::unordered_map<std::string, size_t> turns;
    for (auto& r : waiting_) {
      if (r->admitted_once || r->kv_len > 0 || !r->pages.pages.empty()) ordered.push_back(r);
      else fresh.push_back({turns[r->g.client]++, r});
    }
    if (turns.size() <= 1) return;  // one client: arrival order as it is
    std::stable_sort(fresh.begin(), fresh.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (auto& [turn, r] : fresh) ordered.push_back(r);
    waiting_ = std::move(ordered);
  }

  void order_by_prefix_match() {
    // Longest prefix match first (among requests not yet started), stable.
    std::vector<std::pair<int64_t, RequestPtr>> scored;
    std::deque<RequestPtr> started;
    for (auto& r : waiting_) {
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
    waiting_ = started;
    for (auto& [m, r] : scored) waiting_.push_back(r);
  }

  // ---------------------------------------------------------------- decode
  // Gives every running request `extra` more cache positions, retracting the newest when short.
  void reserve_running(int64_t extra) {
    for (size_t i = 0; i < running_.size();) {
      RequestPtr r = running_[i];
      if (reserve(*r, r->kv_len + extra)) {
        ++i;
        continue;
      }
      retract(running_.back());
    }
  }

  void run_decode() {
    reserve_running(1);
    if (running_.empty()) return;
    std::vector<SequenceChunk> chunks;
    batch_.assign(running_.begin(), running_.end());
    for (auto& r : batch_) chunks.push_back(SequenceChunk{&r->pages, r->kv_len, {r->output_ids.back()}, {0}});
    auto t0 = std::chrono::steady_clock::now();
    BatchLayout layout{pool_.page_size(), opt_.decode_attention, 0, trash_slot_};
    ForwardOutput fo = forward(build_forward_batch(chunks, layout));
    std::vector<RequestState*> reqs;
    for (auto& r : batch_) reqs.push_back(r.get());
    std::vector<SampledToken> picked = choose(fo.logits, reqs);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_decode_tps_ = s > 0 ? double(batch_.size()) / s : 0;
    log_decode();
    for (size_t i = 0; i < batch_.size(); ++i) {
      RequestPtr r = batch_[i];
      r->kv_len += 1;
      r->output_ids.push_back(picked[i].token);
      deliver(r, r->output_ids.size() - 1, std::span(&picked[i], 1));
    }
  }

  // One verification of every running request's draft tree: the target scores [last token, nodes]
  // (each node seeing its ancestors), the target's token at every row is chosen in one
  // Backend::sample call, each node's row as if its ancestors had been accepted (their tokens
  // counted for penalties, min_new_tokens and the step: the only case in which the walk reads that
  // row), then walking down from the root a node is accepted while it matches the token chosen at
  // its parent, and the first token with no matching child is the bonus. Accepted nodes' latents
  // move to their sequence positions.
  void run_speculative_decode() {
    reserve_running(spec_margin());
    if (running_.empty()) return;
    std::vector<SequenceChunk> chunks;
    batch_.assign(running_.begin(), running_.end());
    for (auto& r : batch_) {
      const DraftState& d = r->draft;
      const size_t n = d.tokens.size() + 1;
      SequenceChunk c{&r->pages, r->kv_len, {r->output_ids.back()}, {}};
      c.tokens.insert(c.tokens.end(), d.tokens.begin(), d.tokens.end());
      c.positions.push_back(int32_t(r->kv_len));
      for (int32_t dep : d.depth) c.positions.push_back(int32_t(r->kv_len + dep));
      c.tree_mask.assign(n * n, 0);
      for (size_t a = 0; a < n; ++a) {
        c.tree_mask[a * n] = 1;  // every node sees the root
        for (int x = int(a) - 1; x >= 0; x = d.parent[x]) c.tree_mask[a * n + size_t(x) + 1] = 1;
      }
      for (int32_t j = 0; j < int32_t(n); ++j) c.logit_offsets.push_back(j);
      chunks.push_back(std::move(c));
    }
    auto t0 = std::chrono::steady_clock::now();
    BatchLayout layout{pool_.page_size(), AttentionMode::Absorbed, 0, trash_slot_};
    ForwardOutput fo = forward(build_forward_batch(chunks, layout));
    auto hidden = host_rows(model_.backend(), fo.hidden);
    std::vector<SamplingRow> rows;
    std::deque<SamplingRowLists> lists;
    ConstraintMasks masks(model_.config().vocab_size);
    const int32_t eos = model_.config().eos_token_id;
    for (auto& rp : batch_) {
      RequestState& r = *rp;
      const SamplingState& st = sampling_state(r);
      const DraftState& d = r.draft;
      rows.push_back(with_logprobs(r, st.row()));
      masks.apply(r, {}, eos, rows.back());
      for (size_t x = 0; x < d.tokens.size(); ++x) {
        std::vector<int32_t> path;  // the node's ancestors below the root, then the node
        for (int y = int(x); y >= 0; y = d.parent[size_t(y)]) path.push_back(d.tokens[size_t(y)]);
        std::reverse(path.begin(), path.end());
        rows.push_back(with_logprobs(r, st.row_after(path, lists.emplace_back())));
        masks.apply(r, path, eos, rows.back());  // the grammar as if the path were accepted
      }
    }
    const std::vector<SampledToken> picked = model_.backend().sample(fo.logits, rows);
    std::vector<std::vector<DraftRow>> draft_rows;
    std::vector<float> draft_hidden;
    std::vector<size_t> first_new;
    std::vector<std::vector<SampledToken>> used_rows;
    std::vector<int32_t> move_src, move_dst;
    size_t base = 0;
    for (size_t i = 0; i < batch_.size(); ++i) {
      RequestState& r = *batch_[i];
      const DraftState& d = r.draft;
      first_new.push_back(r.output_ids.size());
      used_rows.emplace_back();
      std::vector<DraftRow> dr;
      int node = -1;  // -1: the root (row 0); node x is row x + 1
      while (true) {
        const size_t row = base + size_t(node + 1);
        const int32_t tok = picked[row].token;
        r.sampling->accept(tok);
        advance_constraint(r, tok, eos);
        const int64_t at = r.kv_len + int64_t(dr.size());  // sequence position of this row's token
        if (row != base + dr.size()) {                      // an accepted node off the chain: move it
          move_src.push_back(r.pages.slot(r.kv_len + node + 1, pool_.page_size()));
          move_dst.push_back(r.pages.slot(at, pool_.page_size()));
        }
        r.output_ids.push_back(tok);
        used_rows.back().push_back(picked[row]);
        dr.push_back({at, tok});
        draft_hidden.insert(draft_hidden.end(), hidden[row].begin(), hidden[row].end());
        int child = -1;
        for (size_t x = 0; x < d.tokens.size() && child < 0; ++x)
          if (d.parent[x] == node && d.tokens[x] == tok) child = int(x);
        if (child < 0) break;
        node = child;
      }
      const int64_t accepted = int64_t(dr.size());
      r.kv_len += accepted;
      r.draft.verify_count += 1;
      r.draft.accepted_total += accepted;
      spec_verify_total_ += 1;
      spec_accepted_total_ += accepted;
      draft_rows.push_back(std::move(dr));
      base += chunks[i].tokens.size();
    }
    if (!move_src.empty()) model_.move_cache_slots(cache_, move_src, move_dst);  // every rank's copy
    std::vector<RequestState*> reqs;
    for (auto& r : batch_) reqs.push_back(r.get());
    eagle_->draft(reqs, eagle_->extend(reqs, draft_rows, draft_hidden));
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_decode_tps_ = s > 0 ? double(spec_accepted_total_ - prev_accepted_) / s : 0;
    prev_accepted_ = spec_accepted_total_;
    log_decode();
    for (size_t i = 0; i < batch_.size(); ++i) deliver(batch_[i], first_new[i], used_rows[i]);
  }

  // Every --decode-log-interval decode steps, one line of the batch's state (as SGLang's).
  void log_decode() {
    if (opt_.decode_log_interval <= 0 || ++decode_steps_ % opt_.decode_log_interval != 0) return;
    const int64_t used = pool_.num_pages() - pool_.num_free();
    spdlog::info("decode: {} running, {} queued, KV cache {} of {} tokens ({:.1f}%), {:.1f} tokens/s",
                 running_.size(), waiting_.size(), used * pool_.page_size(), pool_.num_pages() * pool_.page_size(),
                 100.0 * double(used) / double(std::max<int64_t>(pool_.num_pages(), 1)), last_decode_tps_);
  }

  void retract(RequestPtr r) {
    spdlog::debug("retracting request {} ({} tokens) to free KV pages", r->g.rid, r->fill_len());
    running_.erase(std::find(running_.begin(), running_.end(), r));
    release_pages(*r);
    waiting_.push_front(r);
    ++retractions_;
  }

  // ---------------------------------------------------------------- sampling and events
  // The request's sampling state, made at its first token choice: a request without a seed of its
  // own takes the next of the run's seeds, in the order requests first choose.
  SamplingState& sampling_state(RequestState& r) {
    if (!r.sampling) {
      std::vector<int32_t> stop_ids = r.g.sampling.stop_token_ids;
      if (!r.g.sampling.ignore_eos) stop_ids.push_back(model_.config().eos_token_id);
      uint64_t seed = r.g.sampling.seed ? *r.g.sampling.seed : opt_.random_seed + 7919 * (++seed_counter_);
      r.sampling.emplace(r.g.sampling, seed, r.g.input_ids, std::move(stop_ids));
    }
    return *r.sampling;
  }

  // The row asking for the log-probabilities the request reports.
  static SamplingRow with_logprobs(const RequestState& r, SamplingRow row) {
    row.want_logprob = r.g.return_logprob;
    row.top_logprobs = r.g.return_logprob ? r.g.top_logprobs_num : 0;
    return row;
  }

  // Chooses the next token of every request, reqs[i] from row i of logits, in one backend call,
  // and records it in the request's sampling state (and its constraint, for structured output).
  std::vector<SampledToken> choose(const Tensor& logits, const std::vector<RequestState*>& reqs) {
    std::vector<SamplingRow> rows;
    ConstraintMasks masks(model_.config().vocab_size);
    const int32_t eos = model_.config().eos_token_id;
    for (RequestState* r : reqs) {
      rows.push_back(with_logprobs(*r, sampling_state(*r).row()));
      masks.apply(*r, {}, eos, rows.back());
    }
    std::vector<SampledToken> picked = model_.backend().sample(logits, rows);
    for (size_t i = 0; i < reqs.size(); ++i) {
      reqs[i]->sampling->accept(picked[i].token);
      advance_constraint(*reqs[i], picked[i].token, eos);
    }
    return picked;
  }

  // Sends output_ids[from...] (picked[k] the choice of output_ids[from + k], with its logprobs) as
  // one event, applying the stop conditions token by token: tokens after a stop are dropped.
  void deliver(const RequestPtr& r, size_t from, std::span<const SampledToken> picked) {
    RequestOutput out;
    out.rid = r->g.rid;
    if (r->g.return_logprob && !r->sent_input_logprobs) {
      if (r->lp_start() == 0) {
        out.input_token_logprobs.push_back({std::nullopt, r->g.input_ids[0]});
        out.input_top_logprobs.push_back(std::nullopt);
      }
      out.input_token_logprobs.insert(out.input_token_logprobs.end(), r->input_lp.begin(), r->input_lp.end());
      out.input_top_logprobs.insert(out.input_top_logprobs.end(), r->input_top.begin(), r->input_top.end());
      r->input_lp.clear();
      r->input_top.clear();
      r->sent_input_logprobs = true;
    }
    const SamplingParams& sp = r->g.sampling;
    const ModelConfig& cfg = model_.config();
    std::optional<FinishReason> why;
    if (sp.max_new_tokens == 0) {
      r->output_ids.clear();
      why = FinishReason{"length", {}, 0, ""};
    }
    for (size_t i = from; i < r->output_ids.size() && !why; ++i) {
      const int32_t tok = r->output_ids[i];
      out.new_token_ids.push_back(tok);
      ++generation_tokens_;
      if (r->g.return_logprob) {
        const SampledToken& c = picked[i - from];
        out.output_token_logprobs.push_back({c.logprob, tok});
        out.output_top_logprobs.push_back(c.top_logprobs);
      }
      const bool eos = (!sp.ignore_eos || r->grammar_ended) && tok == cfg.eos_token_id;
      const bool listed = std::find(sp.stop_token_ids.begin(), sp.stop_token_ids.end(), tok) != sp.stop_token_ids.end();
      if ((eos || listed) && (int(i + 1) >= sp.min_new_tokens || r->grammar_ended))
        why = FinishReason{"stop", tok, 0, ""};
      else if (int(i + 1) >= sp.max_new_tokens)
        why = FinishReason{"length", {}, sp.max_new_tokens, ""};
      if (why) {  // drop what came after the stop
        r->output_ids.resize(i + 1);
        r->kv_len = std::min(r->kv_len, r->fill_len() - 1);
      }
    }
    if (why) {
      finish(r, std::move(*why), std::move(out));
      return;
    }
    fill_counts(*r, out);
    r->cb(std::move(out));
  }

  void fill_counts(const RequestState& r, RequestOutput& out) {
    out.prompt_tokens = int(r.g.input_ids.size());
    out.completion_tokens = int(r.output_ids.size());
    out.cached_tokens = r.cached_tokens;
    out.spec_verify_ct = r.draft.verify_count;
  }

  void finish(RequestPtr r, FinishReason why, RequestOutput out = {}) {  // by value: it erases the map entry
    if (by_rid_.erase(r->g.rid) == 0) return;  // already finished
    {
      std::lock_guard lk(mu_);
      live_rids_.erase(r->g.rid);
    }
    if (auto it = std::find(running_.begin(), running_.end(), r); it != running_.end()) running_.erase(it);
    if (auto it = std::find(waiting_.begin(), waiting_.end(), r); it != waiting_.end()) waiting_.erase(it);
    if (!opt_.disable_radix_cache && why.type != "abort" && r->kv_len > 0 && r->discard_before == 0) {
      std::vector<int32_t> f = r->fill();
      f.resize(size_t(std::min<int64_t>(r->kv_len, int64_t(f.size()))));
      radix_.insert(f, r->pages.pages);
    }
    release_pages(*r);
    prompt_tokens_ += int64_t(r->g.input_ids.size());
    cached_total_ += r->cached_tokens;
    out.rid = r->g.rid;
    out.finished = true;
    out.finish_reason = std::move(why);
    fill_counts(*r, out);
    r->cb(std::move(out));
  }

  void set_waiting_count() {
    std::unordered_map<std::string, int64_t> by_client;
    for (const RequestPtr& r : waiting_) ++by_client[r->g.client];
    std::lock_guard lk(mu_);
    waiting_count_ = waiting_.size();
    waiting_by_client_ = std::move(by_client);
  }

  void publish_stats() {
    EngineStats s;
    s.running_requests = int(running_.size());
    s.queued_requests = int(waiting_.size());
    s.kv_pages_total = pool_.num_pages();
    s.kv_pages_used = pool_.num_pages() - pool_.num_free();
    s.page_size = pool_.page_size();
    s.prompt_tokens_total = prompt_tokens_;
    s.generation_tokens_total = generation_tokens_;
    s.cached_tokens_total = cached_total_;
    s.retractions_total = retractions_;
    s.last_decode_tokens_per_s = last_decode_tps_;
    s.spec_verify_total = spec_verify_total_;
    s.spec_accepted_tokens_total = spec_accepted_total_;
    {
      std::lock_guard lk(mu_);
      s.fatal_error = fatal_;
    }
    set_waiting_count();
    std::lock_guard lk(stats_mu_);
    stats_ = s;
  }

  ModelRunner& model_;
  LatentCache& cache_;
  PagePool& pool_;
  SchedulerOptions opt_;
  RadixCache radix_;
  int32_t trash_slot_;
  std::optional<EagleWorker> eagle_;

  // Shared with other threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestPtr> inbox_;
  std::string fatal_;  // the device failed (see loop)
  std::vector<std::string> aborts_;
  bool flush_ = false, stopping_ = false;
  size_t waiting_count_ = 0;
  std::unordered_set<std::string> live_rids_;  // submitted and not finished
  std::unordered_map<std::string, int64_t> inbox_by_client_, waiting_by_client_;  // queued requests per client
  mutable std::mutex stats_mu_;
  EngineStats stats_;
  std::atomic<int64_t> step_started_ns_{0};  // when the running step began (0: idle), for watchdogs
  std::atomic<int64_t> forwards_done_{0};     // forwards started, for EngineStats::progress

  // Scheduler thread only.
  std::deque<RequestPtr> waiting_;
  std::vector<RequestPtr> running_;
  std::vector<RequestPtr> batch_;
  std::unordered_map<std::string, RequestPtr> by_rid_;
  uint64_t seed_counter_ = 0;
  int64_t forwards_ = 0;  // forwards run, to tell the model runner when a step ran none
  int64_t prompt_tokens_ = 0, generation_tokens_ = 0, cached_total_ = 0, retractions_ = 0;
  int64_t spec_verify_total_ = 0, spec_accepted_total_ = 0, prev_accepted_ = 0;
  double last_decode_tps_ = 0;
  int64_t decode_steps_ = 0;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Engine> create_engine(ModelRunner& model, LatentCache& cache, PagePool& pool,
                                      const SchedulerOptions& opt) {
  DS_CHECK(opt.schedule_policy == "fcfs" || opt.schedule_policy == "lpm",
           "--schedule-policy: expected fcfs or lpm, found '{}'", opt.schedule_policy);
  DS_CHECK(opt.max_running_requests >= 1, "--max-running-requests must be at least 1, found {}",
           opt.max_running_requests);
  DS_CHECK(opt.max_queued_requests >= 1, "--max-queued-requests must be at least 1, found {}", opt.max_queued_requests);
  DS_CHECK(opt.decode_attention == AttentionMode::Absorbed || !opt.speculative.enabled(),
           "--disable-mla with speculative decoding: verifying a draft tree needs the absorbed attention");
  SchedulerOptions o = opt;
  o.speculative.validate_and_default();
  return std::make_unique<Scheduler>(model, cache, pool, o);
}

}  // namespace dsserve
