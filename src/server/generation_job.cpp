// One engine request with incremental detokenization and stop strings (see generation_job.h).
#include "server/generation_job.h"

#include <spdlog/spdlog.h>

#include "server/api_error.h"

namespace dsserve::server {

GenerationJob::GenerationJob(ServerContext& ctx, std::shared_ptr<Responder> responder, GenerationRequest req,
                             TextOptions text)
    : ctx_(ctx), responder_(std::move(responder)), req_(std::move(req)), text_options_(std::move(text)),
      start_(std::chrono::steady_clock::now()) {
  if (ctx_.tokenizer) {
    text::DetokenizeOptions o;
    o.skip_special_tokens = text_options_.skip_special_tokens;
    o.spaces_between_special_tokens = text_options_.spaces_between_special_tokens;
    o.stop = text_options_.stop;
    o.no_stop_trim = text_options_.no_stop_trim;
    detok_.emplace(*ctx_.tokenizer, std::move(o));
  }
  prompt_tokens = int(req_.input_ids.size());
}

ApiError api_error_of(const EngineError& e, const ServerSettings& settings) {
  auto param = [&]() -> std::optional<std::string> {
    return e.field.empty() ? std::nullopt : std::optional<std::string>(e.field);
  };
  switch (e.kind) {
    case EngineErrorKind::InvalidRequest: return ApiError(400, e.what(), "invalid_request_error", param());
    case EngineErrorKind::DuplicateRequestId:
      return ApiError(400, e.what(), "invalid_request_error", std::string("rid"), std::string("duplicate_request_id"));
    case EngineErrorKind::TooManySequences:
      return ApiError(400, e.what(), "invalid_request_error", param(), std::string("too_many_sequences"));
    case EngineErrorKind::QueueFull: {
      ApiError err(503, e.what(), "service_unavailable_error", std::nullopt, std::string("queue_full"));
      err.retry_after_s = settings.retry_after_s;
      return err;
    }
    case EngineErrorKind::ShuttingDown:
      return ApiError(503, e.what(), "service_unavailable_error", std::nullopt, std::string("shutting_down"));
    case EngineErrorKind::DeviceFailed:
      return ApiError(503, e.what(), "service_unavailable_error", std::nullopt, std::string("device_failed"));
  }
  return ApiError(500, e.what(), "internal_server_error");
}

Submission GenerationJob::prepare(Listener listener) {
  listener_ = std::move(listener);
  auto self = shared_from_this();
  Submission s{req_, [self](RequestOutput out) {
                 // Scheduler thread: hand the event to the connection's strand and return.
                 self->responder_->post([self, out = std::move(out)]() mutable { self->on_output(std::move(out)); });
               }};
  s.request.client = responder_->client();
  return s;
}

void GenerationJob::abandon() {
  listener_ = nullptr;  // the listener may hold the route's state, which holds this job
  cancelled_ = true;
}

void GenerationJob::start(Listener listener) {
  std::vector<Submission> one;
  one.push_back(prepare(std::move(listener)));
  try {
    ctx_.engine.submit_all(std::move(one));
  } catch (const EngineError& e) {
    abandon();
    throw api_error_of(e, ctx_.settings);
  } catch (...) {
    abandon();
    throw;
  }
}

void GenerationJob::cancel() {
  if (finished_ || cancelled_) return;
  cancelled_ = true;
  listener_ = nullptr;
  ctx_.engine.abort(req_.rid);
  // The client went away (or a timeout gave up): the request ends here, aborted, for /metrics too.
  e2e_latency_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  ctx_.metrics.on_request_finished(ttft_s, e2e_latency_s, completion_tokens(), prompt_tokens, /*aborted=*/true);
}

void GenerationJob::on_output(RequestOutput out) {
  if (finished_ || cancelled_) return;
  try {
    handle_output(std::move(out));
  } catch (const std::exception& e) {
    // Never let one request's failure reach the io thread: end it as aborted.
    spdlog::error("request {}: {}", req_.rid, e.what());
    if (finished_) return;
    ctx_.engine.abort(req_.rid);
    finish = FinishReason{"abort", std::nullopt, 0, std::string("internal error: ") + e.what()};
    finished_ = true;
    if (listener_) listener_(*this, "", output_ids.size());
    listener_ = nullptr;
  }
}

void GenerationJob::handle_output(RequestOutput out) {
  auto now = std::chrono::steady_clock::now();
  if (!out.input_token_logprobs.empty()) {
    input_token_logprobs = std::move(out.input_token_logprobs);
    input_top_logprobs = std::move(out.input_top_logprobs);
  }
  if (out.prompt_tokens > 0) prompt_tokens = out.prompt_tokens;
  cached_tokens = out.cached_tokens;
  spec_verify_ct = out.spec_verify_ct;
  if (ttft_s < 0 && !out.new_token_ids.empty()) ttft_s = std::chrono::duration<double>(now - start_).count();

  size_t first_new = output_ids.size();
  std::string new_text;
  bool stopped_by_string = false;
  // A matched stop token ends the text without its own text (SGLang trims it unless no_stop_trim).
  bool trim_last = out.finished && out.finish_reason && out.finish_reason->type == "stop" &&
                   out.finish_reason->matched_token && !text_options_.no_stop_trim;
  for (size_t i = 0; i < out.new_token_ids.size(); ++i) {
    int32_t id = out.new_token_ids[i];
    output_ids.push_back(id);
    if (i < out.output_token_logprobs.size()) output_token_logprobs.push_back(out.output_token_logprobs[i]);
    if (i < out.output_top_logprobs.size()) output_top_logprobs.push_back(out.output_top_logprobs[i]);
    if (!detok_) continue;
    bool last = i + 1 == out.new_token_ids.size();
    if (trim_last && last && id == *out.finish_reason->matched_token) continue;
    // The model's vocabulary may be padded beyond the tokenizer's: such ids have no text.
    if (id < 0 || id >= ctx_.tokenizer->vocab_size()) continue;
    new_text += detok_->push(id);
    if (detok_->stopped()) {
      stopped_by_string = true;
      break;
    }
  }
  if (stopped_by_string) {
    matched_stop_string = detok_->matched_stop();
    finish = FinishReason{"stop", std::nullopt, 0, ""};
    finished_ = true;
    ctx_.engine.abort(req_.rid);  // its final "abort" event is ignored: this request already ended
  } else if (out.finished) {
    if (detok_) new_text += detok_->finish();
    finish = out.finish_reason.value_or(FinishReason{"abort", std::nullopt, 0, "finished without a reason"});
    finished_ = true;
  }
  text += new_text;
  if (finished_) {
    e2e_latency_s = std::chrono::duration<double>(now - start_).count();
    ctx_.metrics.on_request_finished(ttft_s, e2e_latency_s, completion_tokens(), prompt_tokens,
                                     finish.type == "abort");
  }
  if (listener_ && (finished_ || !new_text.empty() || output_ids.size() > first_new)) {
    auto keep = shared_from_this();
    listener_(*this, new_text, first_new);
  }
  if (finished_) listener_ = nullptr;  // breaks the route's cycle through the listener
}

nlohmann::ordered_json GenerationJob::finish_reason_json() const {
  if (!finished_) return nullptr;
  if (finish.type == "length") return {{"type", "length"}, {"length", finish.length ? finish.length : completion_tokens()}};
  if (finish.type == "stop") {
    if (matched_stop_string) return {{"type", "stop"}, {"matched", *matched_stop_string}};
    if (finish.matched_token) return {{"type", "stop"}, {"matched", *finish.matched_token}};
    return {{"type", "stop"}, {"matched", nullptr}};
  }
  return {{"type", "abort"}, {"message", finish.message}};
}

nlohmann::json GenerationJob::openai_finish_reason() const {
  if (!finished_) return nullptr;
  return finish.type;
}

nlohmann::json GenerationJob::matched_stop() const {
  if (!finished_ || finish.type != "stop") return nullptr;
  if (matched_stop_string) return *matched_stop_string;
  if (finish.matched_token) return *finish.matched_token;
  return nullptr;
}

}  // namespace dsserve::server
