// Data-parallel engine (see data_parallel_engine.h): dispatch, abort routing and summed stats.
#include "runtime/data_parallel_engine.h"

#include <algorithm>

#include "core/error.h"

namespace dsserve {

DataParallelEngine::DataParallelEngine(std::vector<std::unique_ptr<Engine>> groups) : groups_(std::move(groups)) {
  DS_CHECK(!groups_.empty(), "data-parallel engine: no attention groups");
}

DataParallelEngine::~DataParallelEngine() { shutdown(); }

void DataParallelEngine::submit(GenerationRequest req, OutputCallback on_output) {
  const std::string rid = req.rid;
  int g = 0;
  uint64_t serial = 0;  // this submission; a duplicate rid's finish must not forget the original
  {
    std::lock_guard lk(mu_);
    serial = ++submissions_;
    // A rid still in flight goes to its group, whose scheduler refuses the duplicate.
    auto it = in_flight_.find(rid);
    if (it != in_flight_.end()) {
      g = it->second.group;
    } else {
      g = int(next_ % groups_.size());
      next_ = (next_ + 1) % groups_.size();
      in_flight_[rid] = {g, serial};
    }
  }
  auto forget = [this, rid, serial] {
    std::lock_guard lk(mu_);
    auto it = in_flight_.find(rid);
    if (it != in_flight_.end() && it->second.serial == serial) in_flight_.erase(it);
  };
  OutputCallback cb = [forget, on_output = std::move(on_output)](RequestOutput ev) {
    if (ev.finished) forget();
    on_output(std::move(ev));
  };
  try {
    groups_[size_t(g)]->submit(std::move(req), std::move(cb));
  } catch (...) {
    forget();
    throw;
  }
}

void DataParallelEngine::abort(const std::string& rid) {
  int g = group_of(rid);
  if (g >= 0) groups_[size_t(g)]->abort(rid);
}

int DataParallelEngine::group_of(const std::string& rid) const {
  std::lock_guard lk(mu_);
  auto it = in_flight_.find(rid);
  return it == in_flight_.end() ? -1 : it->second.group;
}

void DataParallelEngine::flush_cache() {
  for (auto& e : groups_) e->flush_cache();
}

EngineStats DataParallelEngine::stats() const {
  EngineStats sum;
  for (size_t g = 0; g < groups_.size(); ++g) {
    EngineStats s = groups_[g]->stats();
    sum.running_requests += s.running_requests;
    sum.queued_requests += s.queued_requests;
    sum.kv_pages_total += s.kv_pages_total;
    sum.kv_pages_used += s.kv_pages_used;
    sum.page_size = s.page_size;
    sum.prompt_tokens_total += s.prompt_tokens_total;
    sum.generation_tokens_total += s.generation_tokens_total;
    sum.cached_tokens_total += s.cached_tokens_total;
    sum.retractions_total += s.retractions_total;
    sum.last_decode_tokens_per_s += s.last_decode_tokens_per_s;
    sum.current_step_s = std::max(sum.current_step_s, s.current_step_s);
    if (sum.fatal_error.empty() && !s.fatal_error.empty()) sum.fatal_error = s.fatal_error;
    sum.spec_verify_total += s.spec_verify_total;
    sum.spec_accepted_tokens_total += s.spec_accepted_tokens_total;
  }
  return sum;
}

int64_t DataParallelEngine::max_queued_requests() const {
  int64_t sum = 0;
  for (auto& e : groups_) sum += e->max_queued_requests();
  return sum;
}

void DataParallelEngine::shutdown() {
  for (auto& e : groups_) e->shutdown();
}

}  // namespace dsserve
