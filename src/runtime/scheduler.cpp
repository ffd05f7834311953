// The scheduler (see scheduler.h): one thread, one loop. Each iteration takes in new requests and
// aborts (request_inbox.h), then runs either a prefill step or a decode step (scheduler_steps.h:
// admission against pages in kv_admission.h, token choice in token_choice.h, the speculative round
// in speculative/), whose events output_delivery.h sends. A decode step follows every prefill step
// while requests are running, so prefills cannot starve decoding.
#include "runtime/scheduler.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "runtime/request_inbox.h"
#include "runtime/scheduler_steps.h"

namespace dsserve {

namespace {

class Scheduler final : public Engine {
 public:
  Scheduler(ModelRunner& model, LatentCache& cache, PagePool& pool, const SchedulerOptions& opt)
      : model_(model), cache_(cache), opt_(opt), trash_slot_(int32_t(pool.num_pages() * pool.page_size())),
        kv_(pool, {opt.schedule_policy, opt.disable_radix_cache, opt.speculative.enabled()}),
        chooser_(model.config(), opt.random_seed),
        inbox_({&model.config(), model.context_len(), pool.page_size(), pool.num_pages(),
                opt.speculative.cache_margin(), opt.max_queued_requests}),
        out_(model.config(), q_, kv_, inbox_) {
    DS_CHECK(cache.num_pages >= cache_pages_for(pool), "latent cache has {} pages; the pool of {} needs {}",
             cache.num_pages, pool.num_pages(), cache_pages_for(pool));
    if (opt_.speculative.enabled()) {
      DS_CHECK(opt_.mtp_cache && opt_.mtp_cache->num_pages >= cache_pages_for(pool) &&
                   opt_.mtp_cache->page_size == pool.page_size(),
               "speculative decoding needs an MTP cache with the pool's page size and {} pages", cache_pages_for(pool));
      spec_ = std::make_unique<SpeculativeDecoder>(model_, cache_, *opt_.mtp_cache, pool.page_size(), trash_slot_,
                                                   opt_.speculative);
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~Scheduler() override { shutdown(); }

  void submit(GenerationRequest g, OutputCallback cb) override {
    std::vector<Submission> one;
    one.push_back({std::move(g), std::move(cb)});
    inbox_.submit(std::move(one));
  }
  void submit_all(std::vector<Submission> group) override { inbox_.submit(std::move(group)); }
  int64_t max_queued_requests() const override { return opt_.max_queued_requests; }
  void abort(const std::string& rid) override { inbox_.abort(rid); }
  void flush_cache() override { inbox_.flush_cache(); }

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
    inbox_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    StepContext steps{model_, opt_, trash_slot_, q_, kv_, chooser_, out_, spec_.get(),
                      [this](const ForwardBatch& b) { return forward(b); }};
    bool last_was_prefill = false;
    while (take_inbox()) {
      const int64_t forwards_before = forwards_;
      const bool decode_due = last_was_prefill && !q_.running.empty();
      step_started_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count());
      try {
        if (!decode_due && run_prefill(steps)) {
          last_was_prefill = true;
        } else {
          if (!q_.running.empty()) timed_decode(steps);
          last_was_prefill = false;
        }
      } catch (const std::exception& e) {
        fail_batch(e);
      }
      step_started_ns_.store(0);
      q_.batch.clear();
      publish_stats();
      if (forwards_ == forwards_before) model_.set_has_work(false);  // nothing ran: do not hold other groups
    }
    model_.set_has_work(false);  // stopped: runs no more forwards
    out_.abort_all("server shutting down");
    kv_.flush();
  }

  // Moves new requests in, applies aborts and flushes; blocks while idle. False when stopping.
  bool take_inbox() {
    std::optional<RequestInbox::Taken> t = inbox_.take(q_.has_work(), [this] { model_.set_has_work(false); });
    if (!t) return false;
    for (auto& r : t->incoming) {  // submit() keeps rids unique among the requests in flight
      q_.by_rid[r->g.rid] = r;
      q_.waiting.push_back(std::move(r));
    }
    for (const std::string& rid : t->aborts) {
      auto it = q_.by_rid.find(rid);
      if (it != q_.by_rid.end()) out_.finish(it->second, {"abort", {}, 0, "aborted"});
    }
    if (t->flush) kv_.flush();
    inbox_.set_waiting(q_.waiting);
    model_.set_has_work(q_.has_work());
    return true;
  }

  ForwardOutput forward(const ForwardBatch& b) {
    ++forwards_;
    forwards_done_.fetch_add(1, std::memory_order_relaxed);
    return model_.forward(b, cache_);
  }

  void timed_decode(StepContext& steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t tokens = run_decode(steps);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_decode_tps_ = s > 0 ? double(tokens) / s : 0;
    log_decode();
  }

  // A failed forward must not take the server down: fail the requests of that batch. A device that
  // faulted runs nothing more: fail everything, refuse new work, and say why (the server's watchdog
  // ends the process with this reason).
  void fail_batch(const std::exception& e) {
    spdlog::error("scheduler: forward failed: {}", e.what());
    for (auto& r : std::vector<RequestPtr>(q_.batch))
      out_.finish(r, {"abort", {}, 0, std::string("internal error: ") + e.what()});
    const std::string fatal = model_.device_fatal_error();
    if (fatal.empty()) return;
    spdlog::critical("scheduler: the device failed: {}", fatal);
    inbox_.set_fatal(fatal);
    q_.batch.clear();
    out_.abort_all("device failed: " + fatal);
  }

  // Every --decode-log-interval decode steps, one line of the batch's state (as SGLang's).
  void log_decode() {
    if (opt_.decode_log_interval <= 0 || ++decode_steps_ % opt_.decode_log_interval != 0) return;
    PagePool& pool = kv_.pool();
    const int64_t used = pool.num_pages() - pool.num_free();
    spdlog::info("decode: {} running, {} queued, KV cache {} of {} tokens ({:.1f}%), {:.1f} tokens/s",
                 q_.running.size(), q_.waiting.size(), used * pool.page_size(), pool.num_pages() * pool.page_size(),
                 100.0 * double(used) / double(std::max<int64_t>(pool.num_pages(), 1)), last_decode_tps_);
  }

  void publish_stats() {
    PagePool& pool = kv_.pool();
    EngineStats s;
    s.running_requests = int(q_.running.size());
    s.queued_requests = int(q_.waiting.size());
    s.kv_pages_total = pool.num_pages();
    s.kv_pages_used = pool.num_pages() - pool.num_free();
    s.page_size = pool.page_size();
    s.prompt_tokens_total = out_.prompt_tokens();
    s.generation_tokens_total = out_.generation_tokens();
    s.cached_tokens_total = out_.cached_tokens();
    s.retractions_total = kv_.retractions();
    s.last_decode_tokens_per_s = last_decode_tps_;
    s.spec_verify_total = spec_ ? spec_->verify_total() : 0;
    s.spec_accepted_tokens_total = spec_ ? spec_->accepted_total() : 0;
    s.fatal_error = inbox_.fatal();
    inbox_.set_waiting(q_.waiting);
    std::lock_guard lk(stats_mu_);
    stats_ = s;
  }

  ModelRunner& model_;
  LatentCache& cache_;
  SchedulerOptions opt_;
  int32_t trash_slot_;
  KvAdmission kv_;
  TokenChooser chooser_;
  RequestInbox inbox_;  // shared with other threads
  RequestQueues q_;     // scheduler thread only, as everything below
  OutputDelivery out_;
  std::unique_ptr<SpeculativeDecoder> spec_;

  mutable std::mutex stats_mu_;
  EngineStats stats_;
  std::atomic<int64_t> step_started_ns_{0};  // when the running step began (0: idle), for watchdogs
  std::atomic<int64_t> forwards_done_{0};     // forwards started, for EngineStats::progress
  int64_t forwards_ = 0;  // forwards run, to tell the model runner when a step ran none
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
