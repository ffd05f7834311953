// The scheduler thread's lists of requests: waiting (not yet admitted, partly prefilled or
// retracted), running (decoding), the batch of the current step, and every live request by id.
#pragma once
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/request_state.h"

namespace dsserve {

struct RequestQueues {
  std::deque<RequestPtr> waiting;
  std::vector<RequestPtr> running;
  std::vector<RequestPtr> batch;
  std::unordered_map<std::string, RequestPtr> by_rid;

  bool has_work() const { return !waiting.empty() || !running.empty(); }
  std::vector<RequestState*> batch_states() const {
    std::vector<RequestState*> s;
    for (const RequestPtr& r : batch) s.push_back(r.get());
    return s;
  }
};

}  // namespace dsserve
