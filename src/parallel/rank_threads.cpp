// Rank threads (see rank_threads.h).
#include "parallel/rank_threads.h"

#include "core/error.h"

namespace dsserve {

RankThreads::RankThreads(int world) {
  DS_CHECK(world >= 1, "RankThreads: world size {}", world);
  if (world == 1) return;  // run_all runs the job on the caller's thread
  for (int r = 0; r < world; ++r) workers_.push_back(std::make_unique<Worker>());
  for (int r = 0; r < world; ++r) workers_[size_t(r)]->thread = std::thread([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->stop = true;
    w->cv.notify_all();
  }
  for (auto& w : workers_) w->thread.join();
}

void RankThreads::loop(int rank) {
  Worker& w = *workers_[size_t(rank)];
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return w.stop || w.generation != seen; });
      if (w.stop) return;
      seen = w.generation;
      job = w.job;
    }
    std::exception_ptr err;
    try {
      (*job)(rank);
    } catch (...) {
      err = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(w.mu);
    w.error = err;
    w.done = seen;
    w.cv.notify_all();
  }
}

void RankThreads::run_all(const std::function<void(int)>& job) {
  if (workers_.empty()) return job(0);
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->job = &job;
    ++w->generation;
    w->cv.notify_all();
  }
  std::exception_ptr first;
  for (auto& w : workers_) {
    std::unique_lock<std::mutex> lock(w->mu);
    w->cv.wait(lock, [&] { return w->done == w->generation; });
    if (w->error && !first) first = w->error;
    w->error = nullptr;
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace dsserve
