// The watchdog (see watchdog.h).
#include "server/watchdog.h"

#include <fmt/format.h>

namespace dsserve::server {

Watchdog::Watchdog(const Engine& engine, double timeout_s, std::function<void(const std::string&)> on_timeout,
                   double poll_s)
    : engine_(engine), timeout_s_(timeout_s), poll_s_(poll_s), on_timeout_(std::move(on_timeout)) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::run() {
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, std::chrono::duration<double>(poll_s_), [&] { return stop_; })) {
    const EngineStats st = engine_.stats();
    if (!st.fatal_error.empty()) {
      lk.unlock();
      on_timeout_(fmt::format("engine: the device failed: {}", st.fatal_error));
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (st.progress != last_progress_ || st.current_step_s == 0) {  // alive, or idle
      last_progress_ = st.progress;
      last_change_ = now;
      continue;
    }
    const double stalled_s = std::chrono::duration<double>(now - last_change_).count();
    if (st.current_step_s > timeout_s_ && stalled_s > timeout_s_) {
      lk.unlock();
      on_timeout_(fmt::format("watchdog: a scheduler step has made no progress for {:.0f} s (it has run {:.0f} s), "
                              "beyond --watchdog-timeout {} s (a hung kernel or collective?)",
                              stalled_s, st.current_step_s, timeout_s_));
      return;
    }
  }
}

}  // namespace dsserve::server
