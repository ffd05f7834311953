// The scheduler (see scheduler.h): one thread, one loop. Each iteration takes in new requests and
// aborts, then runs either a prefill batch (chunked, admitted against free pages, after a prefix
// match in the radix cache) or a decode batch (one token for every running request, retracting
// the newest requests when pages run out), samples, and sends each request its new tokens.
#include "runtime/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "runtime/batch_builder.h"
#include "runtime/radix_cache.h"
#include "runtime/sampler.h"

namespace dsserve {

namespace {

struct Request {
  GenerationRequest g;
  OutputCallback cb;
  std::vector<int32_t> output_ids;
  SequencePages pages;
  int64_t kv_len = 0;         // tokens of fill() whose latents are in the cache
  int cached_tokens = 0;      // prompt tokens reused from the prefix cache (first admission)
  bool admitted_once = false;
  bool sent_input_logprobs = false;
  std::unique_ptr<Sampler> sampler;
  // Input logprobs gathered over prefill chunks (first admission only).
  std::vector<TokenLogprob> input_lp;
  std::vector<TopLogprobs> input_top;

  // Tokens whose latents the sequence needs: the prompt, then every output token fed back.
  std::vector<int32_t> fill() const {
    std::vector<int32_t> f = g.input_ids;
    f.insert(f.end(), output_ids.begin(), output_ids.end());
    return f;
  }
  int64_t fill_len() const { return int64_t(g.input_ids.size() + output_ids.size()); }
  int64_t lp_start() const { return g.return_logprob && g.logprob_start_len >= 0 ? g.logprob_start_len : -1; }
};

using RequestPtr = std::shared_ptr<Request>;

class Scheduler final : public Engine {
 public:
  Scheduler(DeepseekV3Model& model, LatentCache& cache, PagePool& pool, const SchedulerOptions& opt)
      : model_(model), cache_(cache), pool_(pool), opt_(opt), radix_(pool) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Scheduler() override { shutdown(); }

  void submit(GenerationRequest g, OutputCallback cb) override {
    const ModelConfig& cfg = model_.config();
    DS_CHECK(!g.input_ids.empty(), "request {}: the prompt is empty", g.rid);
    for (size_t i = 0; i < g.input_ids.size(); ++i)
      DS_CHECK(g.input_ids[i] >= 0 && g.input_ids[i] < cfg.vocab_size,
               "request {}: input_ids[{}] = {} is outside the vocabulary [0, {})", g.rid, i, g.input_ids[i],
               cfg.vocab_size);
    validate_sampling_params(g.sampling, cfg.vocab_size);
    const int64_t total = int64_t(g.input_ids.size()) + g.sampling.max_new_tokens;
    DS_CHECK(total <= model_.context_len(),
             "request {}: {} prompt tokens + {} max_new_tokens = {} exceed the context length {}", g.rid,
             g.input_ids.size(), g.sampling.max_new_tokens, total, model_.context_len());
    const int64_t pages_needed = (total + pool_.page_size() - 1) / pool_.page_size();
    DS_CHECK(pages_needed <= pool_.num_pages(),
             "request {}: {} tokens need {} KV pages but the cache has {} in all (--max-total-tokens)", g.rid, total,
             pages_needed, pool_.num_pages());
    auto r = std::make_shared<Request>();
    r->g = std::move(g);
    r->cb = std::move(cb);
    {
      std::lock_guard lk(mu_);
      DS_CHECK(!stopping_, "request {}: the server is shutting down", r->g.rid);
      DS_CHECK(int(inbox_.size() + waiting_count_) < opt_.max_queued_requests,
               "queue full: {} requests are waiting (limit {}); retry later", inbox_.size() + waiting_count_,
               opt_.max_queued_requests);
      inbox_.push_back(std::move(r));
    }
    cv_.notify_one();
  }

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
    std::lock_guard lk(stats_mu_);
    return stats_;
  }
  int64_t context_length() const override { return model_.context_len(); }
  int vocab_size() const override { return model_.config().vocab_size; }

  void shutdown() override {
    {
      std::lock_guard lk(mu_);
      if (stopping_ && !thread_.joinable()) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // ---------------------------------------------------------------- the loop
  void loop() {
    bool last_was_prefill = false;
    while (true) {
      if (!take_inbox()) break;
      bool decode_due = last_was_prefill && !running_.empty();
      try {
        if (!decode_due && run_prefill())
          last_was_prefill = true;
        else if (!running_.empty()) {
          run_decode();
          last_was_prefill = false;
        } else {
          last_was_prefill = false;
        }
      } catch (const std::exception& e) {
        // A failed forward must not take the server down: fail the requests of that batch.
        spdlog::error("scheduler: forward failed: {}", e.what());
        for (auto& r : batch_) finish(r, FinishReason{"abort", std::nullopt, 0, std::string("internal error: ") + e.what()});
        batch_.clear();
      }
      publish_stats();
    }
    // Shutdown: abort everything.
    for (auto& r : std::vector<RequestPtr>(running_.begin(), running_.end())) finish(r, {"abort", {}, 0, "server shutting down"});
    for (auto& r : std::vector<RequestPtr>(waiting_.begin(), waiting_.end())) finish(r, {"abort", {}, 0, "server shutting down"});
    radix_.clear();
  }

  // Moves new requests in, applies aborts and flushes; blocks while idle. False when stopping.
  bool take_inbox() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] {
      return stopping_ || !inbox_.empty() || !aborts_.empty() || flush_ || !waiting_.empty() || !running_.empty();
    });
    if (stopping_) return false;
    std::vector<RequestPtr> duplicates;
    for (auto& r : inbox_) {
      if (by_rid_.count(r->g.rid)) {
        duplicates.push_back(std::move(r));
        continue;
      }
      by_rid_[r->g.rid] = r;
      waiting_.push_back(std::move(r));
    }
    inbox_.clear();
    std::vector<std::string> aborts;
    aborts.swap(aborts_);
    bool flush = flush_;
    flush_ = false;
    waiting_count_ = waiting_.size();
    lk.unlock();
    for (auto& r : duplicates) {
      RequestOutput out;
      out.rid = r->g.rid;
      out.finished = true;
      out.finish_reason = FinishReason{"abort", {}, 0, "request id " + r->g.rid + " is already in use"};
      r->cb(std::move(out));
    }
    for (const std::string& rid : aborts) {
      auto it = by_rid_.find(rid);
      if (it != by_rid_.end()) finish(it->second, {"abort", {}, 0, "aborted"});
    }
    if (flush) radix_.clear();
    return true;
  }

  // ---------------------------------------------------------------- pages
  bool reserve(Request& r, int64_t len) {
    if (r.pages.reserve(pool_, len)) return true;
    int64_t need = (len + pool_.page_size() - 1) / pool_.page_size() - int64_t(r.pages.pages.size());
    if (!opt_.disable_radix_cache) radix_.evict(need - pool_.num_free());
    return r.pages.reserve(pool_, len);
  }

  void release_pages(Request& r) {
    r.pages.release_all(pool_);
    r.kv_len = 0;
  }

  // ---------------------------------------------------------------- prefill
  // Admits waiting requests (continuing a partly prefilled one first) up to the token budget and
  // runs one forward over their next chunks. False when nothing could be admitted.
  bool run_prefill() {
    if (waiting_.empty()) return false;
    if (opt_.schedule_policy == "lpm") order_by_prefix_match();
    int64_t budget = opt_.max_prefill_tokens > 0 ? opt_.max_prefill_tokens : INT64_MAX;
    if (opt_.chunked_prefill_size > 0) budget = std::min<int64_t>(budget, opt_.chunked_prefill_size);
    std::vector<SequenceChunk> chunks;
    batch_.clear();
    std::vector<int64_t> chunk_end;
    for (auto it = waiting_.begin(); it != waiting_.end() && budget > 0;) {
      RequestPtr r = *it;
      if (int(running_.size() + batch_.size()) >= opt_.max_running_requests) break;
      if (r->kv_len == 0 && r->pages.pages.empty()) match_prefix(*r);
      const int64_t len = r->fill_len(), take = std::min<int64_t>(budget, len - r->kv_len);
      if (!reserve(*r, r->kv_len + take)) {
        if (r->pages.pages.size() > 0 && r->kv_len == 0) release_pages(*r);  // drop a prefix match we cannot use
        break;  // no room: wait for pages (fcfs: do not overtake)
      }
      std::vector<int32_t> f = r->fill();
      SequenceChunk c{&r->pages, r->kv_len, std::vector<int32_t>(f.begin() + r->kv_len, f.begin() + r->kv_len + take), {}};
      const int64_t lp0 = r->lp_start();
      for (int64_t p = r->kv_len; p < r->kv_len + take; ++p) {
        bool for_input_lp = !r->admitted_once && lp0 >= 0 && p + 1 >= std::max<int64_t>(lp0, 1) &&
                            p + 1 < int64_t(r->g.input_ids.size());
        if (for_input_lp || p == len - 1) c.logit_offsets.push_back(int32_t(p - r->kv_len));
      }
      chunks.push_back(std::move(c));
      chunk_end.push_back(r->kv_len + take);
      batch_.push_back(r);
      budget -= take;
      it = waiting_.erase(it);
    }
    if (batch_.empty()) return false;
    ForwardBatch fb = build_forward_batch(chunks, pool_.page_size(), AttentionMode::Expanded);
    std::vector<std::vector<float>> rows = logits_rows(model_.forward(fb, cache_).logits);
    size_t row = 0;
    std::vector<RequestPtr> still_prefilling;
    for (size_t i = 0; i < batch_.size(); ++i) {
      RequestPtr r = batch_[i];
      const int64_t start = chunks[i].prefix_len, len = r->fill_len();
      const int64_t lp0 = r->lp_start();
      for (int32_t off : chunks[i].logit_offsets) {
        const int64_t p = start + off;
        std::vector<float>& lg = rows[row++];
        if (!r->admitted_once && lp0 >= 0 && p + 1 >= std::max<int64_t>(lp0, 1) && p + 1 < int64_t(r->g.input_ids.size())) {
          int32_t next = r->g.input_ids[p + 1];
          r->input_lp.push_back({token_logprob(lg, next), next});
          r->input_top.push_back(top_logprobs(lg, r->g.top_logprobs_num));
        }
        if (p == len - 1) {
          r->kv_len = chunk_end[i];
          if (!opt_.disable_radix_cache) radix_.insert(r->fill(), r->pages.pages);
          r->admitted_once = true;
          running_.push_back(r);
          emit_token(r, lg);
        }
      }
      if (r->kv_len != len) {  // more prompt to go: continue it first next time
        r->kv_len = chunk_end[i];
        still_prefilling.push_back(r);
      }
    }
    waiting_.insert(waiting_.begin(), still_prefilling.begin(), still_prefilling.end());
    batch_.clear();
    return true;
  }

  void match_prefix(Request& r) {
    if (opt_.disable_radix_cache) return;
    std::vector<int32_t> f = r.fill();
    // Leave the last token to compute (its logits are needed), and every position whose input
    // logprob is asked for.
    int64_t limit = int64_t(f.size()) - 1;
    if (r.lp_start() >= 0 && !r.admitted_once) limit = std::min<int64_t>(limit, std::max<int64_t>(r.lp_start() - 1, 0));
    int64_t m = radix_.match(f, limit, r.pages.pages);
    r.kv_len = m;
    r.pages.length = m;
    if (!r.admitted_once) r.cached_tokens = int(std::min<int64_t>(m, int64_t(r.g.input_ids.size())));
  }

  void order_by_prefix_match() {
    // Longest prefix match first (among requests not yet started), stable.
    std::vector<std::pair<int64_t, RequestPtr>> scored;
    std::deque<RequestPtr> started;
    for (auto& r : waiting_) {
      if (r->kv_len > 0) {
        started.push_back(r);
        continue;
      }
      std::vector<int32_t> pages;
      std::vector<int32_t> f = r->fill();
      int64_t m = radix_.match(f, int64_t(f.size()) - 1, pages);
      pool_.release(pages);
      scored.push_back({m, r});
    }
    std::stable_sort(scored.begin(), scored.end(), [](auto& a, auto& b) { return a.first > b.first; });
    waiting_ = started;
    for (auto& [m, r] : scored) waiting_.push_back(r);
  }

  // ---------------------------------------------------------------- decode
  void run_decode() {
    // Every running request needs a slot for its last token; retract the newest when short.
    for (size_t i = 0; i < running_.size();) {
      RequestPtr r = running_[i];
      if (reserve(*r, r->kv_len + 1)) {
        ++i;
        continue;
      }
      RequestPtr victim = running_.back();
      retract(victim);
      if (victim == r) continue;  // i now points past the end or at the next request
    }
    if (running_.empty()) return;
    std::vector<SequenceChunk> chunks;
    batch_.assign(running_.begin(), running_.end());
    for (auto& r : batch_) chunks.push_back(SequenceChunk{&r->pages, r->kv_len, {r->output_ids.back()}, {0}});
    ForwardBatch fb = build_forward_batch(chunks, pool_.page_size(), AttentionMode::Absorbed);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::vector<float>> rows = logits_rows(model_.forward(fb, cache_).logits);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_decode_tps_ = s > 0 ? double(batch_.size()) / s : 0;
    for (size_t i = 0; i < batch_.size(); ++i) {
      batch_[i]->kv_len += 1;
      emit_token(batch_[i], rows[i]);
    }
    batch_.clear();
  }

  void retract(const RequestPtr& r) {
    spdlog::debug("retracting request {} ({} tokens) to free KV pages", r->g.rid, r->fill_len());
    running_.erase(std::find(running_.begin(), running_.end(), r));
    release_pages(*r);
    waiting_.push_front(r);
    ++retractions_;
  }

  // ---------------------------------------------------------------- sampling and events
  void emit_token(const RequestPtr& r, std::vector<float>& logits) {
    const ModelConfig& cfg = model_.config();
    if (!r->sampler) {
      std::vector<int32_t> stop_ids = r->g.sampling.stop_token_ids;
      if (!r->g.sampling.ignore_eos) stop_ids.push_back(cfg.eos_token_id);
      uint64_t seed = r->g.sampling.seed ? *r->g.sampling.seed : opt_.random_seed + 7919 * (++seed_counter_);
      r->sampler = std::make_unique<Sampler>(r->g.sampling, seed, r->g.input_ids, stop_ids);
    }
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
    if (r->g.sampling.max_new_tokens == 0) {
      finish(r, {"length", {}, 0, ""}, std::move(out));
      return;
    }
    std::vector<float> scratch = logits;
    int32_t tok = r->sampler->sample(scratch);
    r->sampler->accept(tok);
    r->output_ids.push_back(tok);
    ++generation_tokens_;
    out.new_token_ids.push_back(tok);
    if (r->g.return_logprob) {
      out.output_token_logprobs.push_back({token_logprob(logits, tok), tok});
      out.output_top_logprobs.push_back(top_logprobs(logits, r->g.top_logprobs_num));
    }
    const SamplingParams& sp = r->g.sampling;
    const bool stop_token = !sp.ignore_eos && tok == cfg.eos_token_id;
    const bool listed = std::find(sp.stop_token_ids.begin(), sp.stop_token_ids.end(), tok) != sp.stop_token_ids.end();
    if ((stop_token || listed) && int(r->output_ids.size()) >= sp.min_new_tokens) {
      finish(r, {"stop", tok, 0, ""}, std::move(out));
    } else if (int(r->output_ids.size()) >= sp.max_new_tokens) {
      finish(r, {"length", {}, sp.max_new_tokens, ""}, std::move(out));
    } else {
      fill_counts(*r, out);
      r->cb(std::move(out));
    }
  }

  void fill_counts(const Request& r, RequestOutput& out) {
    out.prompt_tokens = int(r.g.input_ids.size());
    out.completion_tokens = int(r.output_ids.size());
    out.cached_tokens = r.cached_tokens;
  }

  void finish(RequestPtr r, FinishReason why, RequestOutput out = {}) {  // by value: it erases the map entry
    if (by_rid_.erase(r->g.rid) == 0) return;  // already finished
    if (auto it = std::find(running_.begin(), running_.end(), r); it != running_.end()) running_.erase(it);
    if (auto it = std::find(waiting_.begin(), waiting_.end(), r); it != waiting_.end()) waiting_.erase(it);
    if (!opt_.disable_radix_cache && why.type != "abort" && r->kv_len > 0) {
      std::vector<int32_t> f = r->fill();
      f.resize(size_t(r->kv_len));
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

  std::vector<std::vector<float>> logits_rows(const Tensor& logits) {
    Tensor h = model_.backend().to_host_f32(logits);
    int64_t R = h.size(0), V = h.size(1);
    std::vector<std::vector<float>> rows(static_cast<size_t>(R));
    for (int64_t i = 0; i < R; ++i) rows[i].assign(h.ptr<float>() + i * V, h.ptr<float>() + (i + 1) * V);
    return rows;
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
    {
      std::lock_guard lk(mu_);
      waiting_count_ = waiting_.size();
    }
    std::lock_guard lk(stats_mu_);
    stats_ = s;
  }

  DeepseekV3Model& model_;
  LatentCache& cache_;
  PagePool& pool_;
  SchedulerOptions opt_;
  RadixCache radix_;

  // Shared with other threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestPtr> inbox_;
  std::vector<std::string> aborts_;
  bool flush_ = false, stopping_ = false;
  size_t waiting_count_ = 0;
  mutable std::mutex stats_mu_;
  EngineStats stats_;

  // Scheduler thread only.
  std::deque<RequestPtr> waiting_;
  std::vector<RequestPtr> running_;
  std::vector<RequestPtr> batch_;
  std::unordered_map<std::string, RequestPtr> by_rid_;
  uint64_t seed_counter_ = 0;
  int64_t prompt_tokens_ = 0, generation_tokens_ = 0, cached_total_ = 0, retractions_ = 0;
  double last_decode_tps_ = 0;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Engine> create_engine(DeepseekV3Model& model, LatentCache& cache, PagePool& pool,
                                      const SchedulerOptions& opt) {
  DS_CHECK(opt.schedule_policy == "fcfs" || opt.schedule_policy == "lpm",
           "--schedule-policy: expected fcfs or lpm, found '{}'", opt.schedule_policy);
  DS_CHECK(opt.max_running_requests >= 1, "--max-running-requests must be at least 1, found {}",
           opt.max_running_requests);
  return std::make_unique<Scheduler>(model, cache, pool, opt);
}

}  // namespace dsserve
