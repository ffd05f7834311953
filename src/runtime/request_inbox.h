// Where requests enter the engine from other threads: each is checked against the model and the
// cache (InvalidRequest), request ids stay unique among the requests in flight, the queue keeps its
// limit fairly over clients (QueueFull), and aborts, cache flushes and shutdown wait here for the
// scheduler thread, which takes them with take(). It runs no model and holds no pages.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "io/model_config.h"
#include "runtime/engine.h"
#include "runtime/request_state.h"

namespace dsserve {

// What a request is checked against whatever the load.
struct RequestLimits {
  const ModelConfig* config = nullptr;
  int64_t context_len = 0;
  int page_size = 1;
  int64_t num_pages = 0;     // pages of the whole pool
  int64_t spec_margin = 0;   // cache positions a speculative round may touch beyond a request's tokens
  int max_queued_requests = 4096;
};

class RequestInbox {
 public:
  explicit RequestInbox(RequestLimits limits) : lim_(limits) {}

  // Queues the requests of one HTTP request, all or none; throws EngineError.
  void submit(std::vector<Submission> group);
  void abort(const std::string& rid);
  void flush_cache();
  void stop();

  struct Taken {
    std::vector<RequestPtr> incoming;
    std::vector<std::string> aborts;
    bool flush = false;
  };
  // What arrived since the last call. Blocks while none is due and the scheduler has no work of its
  // own (before blocking it calls on_idle once). nullopt once stop() was called.
  std::optional<Taken> take(bool scheduler_has_work, const std::function<void()>& on_idle);

  void release_rid(const std::string& rid);           // finished: the rid may be used again
  void set_waiting(const std::deque<RequestPtr>& waiting);  // the scheduler's queue, for the limit
  void set_fatal(const std::string& reason);          // the device failed: refuse from now on
  std::string fatal() const;

 private:
  void check_request(const GenerationRequest& g) const;
  void check_queue_room(const std::string& client, int64_t k) const;

  RequestLimits lim_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestPtr> inbox_;
  std::vector<std::string> aborts_;
  bool flush_ = false, stopping_ = false;
  std::string fatal_;
  size_t waiting_count_ = 0;
  std::unordered_set<std::string> live_rids_;  // submitted and not finished
  std::unordered_map<std::string, int64_t> inbox_by_client_, waiting_by_client_;  // queued requests per client
};

}  // namespace dsserve
