// The engine requests answering one HTTP request (n choices, a batch, a list of prompts): started
// together (if one cannot be submitted, the ones already submitted are aborted and the error goes
// back to the client), aborted together when the client disconnects, and known to be all finished.
#pragma once
#include <memory>
#include <vector>

#include "server/generation_job.h"

namespace dsserve::server {

// 400 (code too_many_sequences, naming `param`) when one request asks for more sequences than the
// engine can ever queue (--max-queued-requests): checked before anything is tokenized or allocated.
inline void check_sequence_count(const ServerContext& ctx, int64_t sequences, const std::string& param,
                                 const std::string& what) {
  const int64_t limit = ctx.engine.max_queued_requests();
  if (sequences > limit)
    throw ApiError(400, fmt::format("this request asks for {} sequences ({}); the server takes at most {} in one "
                                    "request (--max-queued-requests)", sequences, what, limit),
                   "invalid_request_error", param, std::string("too_many_sequences"));
}

class JobGroup {
 public:
  explicit JobGroup(std::shared_ptr<Responder> r) : responder(std::move(r)) {}

  void add(std::shared_ptr<GenerationJob> job) { jobs.push_back(std::move(job)); }
  // Starts every job with listener(job_index, job, new_text, first_new_id), all or none
  // (Engine::submit_all); installs the cancel hook. When the engine refuses, no job keeps its
  // listener (so nothing the route allocated outlives the request) and the ApiError is thrown.
  template <typename F>
  void start(F listener) {
    std::vector<Submission> subs;
    for (size_t i = 0; i < jobs.size(); ++i)
      subs.push_back(jobs[i]->prepare(
          [listener, i](GenerationJob& j, const std::string& t, size_t first) { listener(i, j, t, first); }));
    if (jobs.empty()) return;
    try {
      jobs[0]->context().engine.submit_all(std::move(subs));
    } catch (const EngineError& e) {
      for (auto& j : jobs) j->abandon();
      throw api_error_of(e, jobs[0]->context().settings);
    } catch (...) {
      for (auto& j : jobs) j->abandon();
      throw;
    }
    std::vector<std::weak_ptr<GenerationJob>> weak(jobs.begin(), jobs.end());
    responder->on_cancel([weak] {
      for (auto& w : weak)
        if (auto j = w.lock()) j->cancel();
    });
  }
  // The answer's two forms: streamed, every event goes to on_event(job_index, job, new_text,
  // first_new_id) and the stream's headers go out once the jobs are submitted; whole, on_done()
  // runs once, when the last job has finished. The callbacks hold what the route keeps alive.
  template <typename OnEvent, typename OnDone>
  void start_answer(bool stream, OnEvent on_event, OnDone on_done) {
    if (stream) {
      start(std::move(on_event));
      responder->start_stream();
      return;
    }
    start([this, on_done](size_t, GenerationJob&, const std::string&, size_t) {
      if (all_finished()) on_done();
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
