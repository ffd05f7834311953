// The engine requests answering one HTTP request (n choices, a batch, a list of prompts): started
// together (if one cannot be submitted, the ones already submitted are aborted and the error goes
// back to the client), aborted together when the client disconnects, and known to be all finished.
#pragma once
#include <memory>
#include <vector>

#include "server/generation_job.h"

namespace dsserve::server {

class JobGroup {
 public:
  explicit JobGroup(std::shared_ptr<Responder> r) : responder(std::move(r)) {}

  void add(std::shared_ptr<GenerationJob> job) { jobs.push_back(std::move(job)); }
  // Starts every job with listener(job_index, job, new_text, first_new_id); installs the cancel
  // hook. Throws the first submit error after aborting the jobs already started.
  template <typename F>
  void start(F listener) {
    for (size_t i = 0; i < jobs.size(); ++i) {
      try {
        jobs[i]->start([listener, i](GenerationJob& j, const std::string& t, size_t first) { listener(i, j, t, first); });
      } catch (...) {
        for (size_t k = 0; k < i; ++k) jobs[k]->cancel();
        throw;
      }
    }
    std::vector<std::weak_ptr<GenerationJob>> weak(jobs.begin(), jobs.end());
    responder->on_cancel([weak] {
      for (auto& w : weak)
        if (auto j = w.lock()) j->cancel();
    });
  }
  bool all_finished() const {
    for (auto& j : jobs)
      if (!j->finished()) return false;
    return true;
  }
  std::vector<const GenerationJob*> views() const {
    std::vector<const GenerationJob*> v;
    for (auto& j : jobs) v.push_back(j.get());
    return v;
  }

  std::shared_ptr<Responder> responder;
  std::vector<std::shared_ptr<GenerationJob>> jobs;
};

}  // namespace dsserve::server
