// One worker thread per rank, each running the jobs given to run_all (all ranks at once): how the
// forwards of a process's ranks run concurrently (their collectives meet each other). A single rank
// runs its jobs on the caller's thread.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dsserve {

// One thread per rank, each running the jobs given to run_all (all ranks at once).
class RankThreads {
 public:
  explicit RankThreads(int world);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  // Runs job(rank) on every rank's thread and waits for all; rethrows the first rank's exception.
  void run_all(const std::function<void(int)>& job);
  int world() const { return std::max<int>(1, int(workers_.size())); }

 private:
  struct Worker {
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    const std::function<void(int)>* job = nullptr;
    uint64_t generation = 0, done = 0;
    std::exception_ptr error;
    bool stop = false;
  };
  void loop(int rank);
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace dsserve
