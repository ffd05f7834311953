// One engine request seen from the server: submits it, receives its output events on the
// connection's strand, detokenizes incrementally, finds stop strings (trims them unless
// no_stop_trim, aborts the engine request, reports finish reason "stop" with the matched string),
// keeps the accumulated ids, text and logprobs, and tells its listener what is new. A route owns
// one job per choice / prompt.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/request.h"
#include "runtime/engine.h"
#include "server/api_error.h"
#include "server/responder.h"
#include "server/server_context.h"
#include "text/detokenizer.h"

namespace dsserve::server {

struct TextOptions {
  std::vector<std::string> stop;
  bool no_stop_trim = false;
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;
};

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  // new_text: text that became final with this event; first_new_id: index in output_ids of the
  // first id of this event.
  using Listener = std::function<void(GenerationJob& job, const std::string& new_text, size_t first_new_id)>;

  GenerationJob(ServerContext& ctx, std::shared_ptr<Responder> responder, GenerationRequest req, TextOptions text);
  // Submits to the engine; throws ApiError (see api_error_of). The listener runs on the
  // responder's strand.
  void start(Listener listener);
  // What start() does in two halves, for a group submitted together (JobGroup): installs the
  // listener and returns the request to hand the engine (tagged with the responder's client);
  // abandon() drops the listener again when the submission failed.
  Submission prepare(Listener listener);
  void abandon();
  // Client gone: aborts the engine request; no further listener calls.
  void cancel();
  ServerContext& context() { return ctx_; }

  const GenerationRequest& request() const { return req_; }
  const std::string& rid() const { return req_.rid; }
  bool finished() const { return finished_; }

  // Accumulated so far.
  std::vector<int32_t> output_ids;
  std::string text;
  std::vector<TokenLogprob> output_token_logprobs, input_token_logprobs;
  std::vector<TopLogprobs> output_top_logprobs, input_top_logprobs;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int spec_verify_ct = 0;  // speculative verification forwards of this request
  FinishReason finish;
  std::optional<std::string> matched_stop_string;
  double e2e_latency_s = 0, ttft_s = -1;

  int completion_tokens() const { return int(output_ids.size()); }
  // SGLang's meta_info.finish_reason: {"type": "length", "length": n}, {"type": "stop",
  // "matched": id or string}, {"type": "abort", "message": ...}; null while running.
  nlohmann::ordered_json finish_reason_json() const;
  // OpenAI's finish_reason: "stop", "length", "abort" (null while running).
  nlohmann::json openai_finish_reason() const;
  // OpenAI's matched_stop (SGLang extension): the stop string or token id, else null.
  nlohmann::json matched_stop() const;

 private:
  void on_output(RequestOutput out);
  void handle_output(RequestOutput out);

  ServerContext& ctx_;
  std::shared_ptr<Responder> responder_;
  GenerationRequest req_;
  TextOptions text_options_;
  std::optional<text::IncrementalDetokenizer> detok_;
  Listener listener_;
  bool finished_ = false;
  bool cancelled_ = false;
  std::chrono::steady_clock::time_point start_;
};

// The HTTP answer to an engine refusal: 400 for a request that can never run (naming the field),
// a duplicate request id or too many sequences; 503 (with Retry-After when the queue is full)
// for a full queue, a server shutting down or a failed device.
ApiError api_error_of(const EngineError& e, const ServerSettings& settings);

}  // namespace dsserve::server
