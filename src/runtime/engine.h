// The engine as the serving layer sees it: submit tokenized requests, receive their output events
// through a callback, abort, inspect. One scheduler thread per data-parallel group runs the model;
// callbacks run on that thread and must return quickly (post the event to your own executor).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine_error.h"
#include "runtime/request.h"

namespace dsserve {

struct EngineStats {
  int running_requests = 0;
  int queued_requests = 0;
  int64_t kv_pages_total = 0, kv_pages_used = 0;
  int page_size = 1;
  int64_t prompt_tokens_total = 0, generation_tokens_total = 0, cached_tokens_total = 0;
  int64_t retractions_total = 0;
  double last_decode_tokens_per_s = 0;
  double current_step_s = 0;              // how long the scheduler's current step has run (0: idle)
  int64_t progress = 0;                   // grows with every forward and every layer run: a sign of life
  std::string fatal_error;                // non-empty: the device failed and no forward can run again
  int64_t spec_verify_total = 0;          // verification forwards (per request)
  int64_t spec_accepted_tokens_total = 0; // tokens emitted by them (accepted drafts + bonus)
  double spec_accept_length() const {
    return spec_verify_total ? double(spec_accepted_tokens_total) / double(spec_verify_total) : 0.0;
  }
};

struct Submission {
  GenerationRequest request;
  OutputCallback on_output;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Queues a request. Throws EngineError (naming the request and the limit): InvalidRequest when
  // it can never run (an empty prompt, a token outside the vocabulary, a sampling field out of
  // range, prompt + max_new_tokens beyond the context), DuplicateRequestId, QueueFull,
  // ShuttingDown, DeviceFailed.
  virtual void submit(GenerationRequest req, OutputCallback on_output) = 0;
  // Queues the requests of one HTTP request (n choices, a batch) all or none: when one cannot be
  // queued, none is (those already queued are aborted; their callbacks see the abort) and the
  // error is thrown. More than max_queued_requests() at once is TooManySequences.
  virtual void submit_all(std::vector<Submission> group);
  // The most requests the engine holds waiting (--max-queued-requests, summed over groups).
  virtual int64_t max_queued_requests() const { return INT64_MAX; }
  // Ends a request early (client gone, stop string matched): frees its pages at once and sends a
  // final event with finish reason "abort" unless it already finished. Unknown rids are ignored.
  virtual void abort(const std::string& rid) = 0;
  virtual void flush_cache() = 0;  // drops unreferenced prefix-cache entries
  virtual EngineStats stats() const = 0;
  virtual int64_t context_length() const = 0;
  virtual int vocab_size() const = 0;
  virtual void shutdown() = 0;     // aborts everything and joins the scheduler thread
};

}  // namespace dsserve
