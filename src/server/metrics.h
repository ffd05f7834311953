// Prometheus metrics of the serving layer: request and token counters and latency histograms
// (time to first token, time per output token, end-to-end), rendered as text with the engine's live
// gauges (running and queued requests, KV usage, prefix-cache hit rate). Names follow SGLang's
// `sglang:` metrics so existing dashboards keep working. Thread-safe.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace dsserve::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name` with `labels` (e.g. model_name="x").
  void render(std::string& out, const std::string& name, const std::string& help, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void on_request_finished(double ttft_s, double e2e_s, int completion_tokens, int prompt_tokens, bool aborted);
  std::string render(const EngineStats& s, const std::string& model_name) const;

 private:
  mutable std::mutex mu_;
  Histogram ttft_, tpot_, e2e_;
  uint64_t requests_finished_ = 0, requests_aborted_ = 0;
};

}  // namespace dsserve::server
