// The watchdog (--watchdog-timeout, as SGLang): a thread that checks once a second whether the
// engine makes progress, and when a step has run for longer than the timeout with no sign of life
// in that time (EngineStats::progress grows with every forward and every decoder layer, so a long
// prefill that is still working is not a hang; a hung kernel or a stuck collective is), or the
// engine reports a failed device (a kernel fault: EngineStats::fatal_error), reports it once, so
// the server can exit non-zero with the reason instead of hanging or serving errors forever.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/engine.h"

namespace dsserve::server {

class Watchdog {
 public:
  // on_timeout gets the reason; it runs on the watchdog's thread, at most once.
  Watchdog(const Engine& engine, double timeout_s, std::function<void(const std::string&)> on_timeout,
           double poll_s = 1.0);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void run();
  const Engine& engine_;
  double timeout_s_, poll_s_;
  int64_t last_progress_ = -1;
  std::chrono::steady_clock::time_point last_change_;
  std::function<void(const std::string&)> on_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dsserve::server
