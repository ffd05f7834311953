// Test doubles for the serving layer: an Engine that answers each request with scripted tokens (or
// refuses it), and a Responder that records what a route sends and runs posted work at once.
#pragma once
#include <atomic>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/responder.h"

namespace dsserve::test {

class FakeEngine : public Engine {
 public:
  std::vector<int32_t> script;      // tokens every request gets, one event each
  bool finish_with_stop = false;    // the last event's finish reason: "stop" (else "length")
  std::string submit_error;         // non-empty: submit() throws EngineError(submit_error_kind, this)
  EngineErrorKind submit_error_kind = EngineErrorKind::QueueFull;
  std::vector<GenerationRequest> submitted;
  std::vector<std::string> aborted;
  EngineStats scripted_stats;       // what stats() reports (with progress)
  std::atomic<int64_t> progress{0};

  void submit(GenerationRequest req, OutputCallback cb) override;
  void abort(const std::string& rid) override { aborted.push_back(rid); }
  void flush_cache() override {}
  EngineStats stats() const override {
    EngineStats s = scripted_stats;
    s.progress = progress.load();
    return s;
  }
  int64_t context_length() const override { return 256; }
  int64_t max_queued_requests() const override { return max_queued; }
  int64_t max_queued = 4096;
  int vocab_size() const override { return 129280; }
  void shutdown() override {}
};

class FakeResponder : public server::Responder {
 public:
  server::HttpResponse response;
  bool sent = false, streaming = false, ended = false;
  std::vector<std::string> chunks;
  std::function<void()> cancel;
  bool closed = false;  // the connection closed (what cancelled() reports)

  void send(server::HttpResponse r) override { response = std::move(r); sent = true; }
  void start_stream() override { streaming = true; }
  void stream(std::string d) override { chunks.push_back(std::move(d)); }
  void end_stream() override { ended = true; }
  void on_cancel(std::function<void()> fn) override { cancel = std::move(fn); }
  bool cancelled() const override { return closed; }
  void post(std::function<void()> fn) override { queue.push_back(std::move(fn)); }
  void post_after(std::chrono::milliseconds, std::function<void()> fn) override { timers.push_back(std::move(fn)); }
  // Runs the timers posted so far (each once); returns how many ran.
  size_t fire_timers() {
    auto due = std::move(timers);
    timers.clear();
    for (auto& fn : due) fn();
    return due.size();
  }
  std::vector<std::function<void()>> timers;
  // Runs posted work (engine events) until none is left.
  void drain() {
    while (!queue.empty()) {
      auto fn = std::move(queue.front());
      queue.pop_front();
      fn();
    }
  }
  std::deque<std::function<void()>> queue;
};

}  // namespace dsserve::test
