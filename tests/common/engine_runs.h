// Runs requests through an Engine to completion for tests: submits them all at once and waits until
// every one has finished, collecting each request's tokens, events and final details.
#pragma once
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace dsserve::test {

struct Collected {
  std::vector<int32_t> ids;             // every new token, in order
  std::vector<RequestOutput> events;    // every event, the final one included
  FinishReason finish;
  int cached_tokens = 0;
  int spec_verify_ct = 0;
};

inline std::vector<Collected> run_to_completion(Engine& engine, const std::vector<GenerationRequest>& reqs) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Collected> out(reqs.size());
  size_t done = 0;
  for (size_t i = 0; i < reqs.size(); ++i)
    engine.submit(reqs[i], [&, i](RequestOutput ev) {
      std::lock_guard lk(mu);
      out[i].ids.insert(out[i].ids.end(), ev.new_token_ids.begin(), ev.new_token_ids.end());
      if (ev.finished) {
        out[i].finish = *ev.finish_reason;
        out[i].cached_tokens = ev.cached_tokens;
        out[i].spec_verify_ct = ev.spec_verify_ct;
        ++done;
        cv.notify_all();
      }
      out[i].events.push_back(std::move(ev));
    });
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return done == reqs.size(); });
  return out;
}

// The tokens of each request only.
inline std::vector<std::vector<int32_t>> tokens_to_completion(Engine& engine, const std::vector<GenerationRequest>& reqs) {
  std::vector<std::vector<int32_t>> ids;
  for (auto& c : run_to_completion(engine, reqs)) ids.push_back(std::move(c.ids));
  return ids;
}

// Greedy requests "r0", "r1", ... of the given prompts, each generating exactly max_new tokens.
inline std::vector<GenerationRequest> greedy_requests(const std::vector<std::vector<int32_t>>& prompts, int max_new) {
  std::vector<GenerationRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r;
    r.rid = "r" + std::to_string(i);
    r.input_ids = prompts[i];
    r.sampling.temperature = 0;
    r.sampling.max_new_tokens = max_new;
    r.sampling.ignore_eos = true;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

}  // namespace dsserve::test
