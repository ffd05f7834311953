// What goes back to a request: its new tokens as one event per step, the stop conditions applied
// token by token (eos, stop_token_ids, min_new_tokens, max_new_tokens; tokens after a stop are
// dropped), and finishing (the final event, the request leaving the queues, its prefix cached for
// later requests, its pages freed and its id released).
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "io/model_config.h"
#include "runtime/kv_admission.h"
#include "runtime/request_inbox.h"
#include "runtime/request_queues.h"

namespace dsserve {

class OutputDelivery {
 public:
  OutputDelivery(const ModelConfig& cfg, RequestQueues& q, KvAdmission& kv, RequestInbox& inbox)
      : cfg_(cfg), q_(q), kv_(kv), inbox_(inbox) {}

  // Sends output_ids[from...] (picked[k] the choice of output_ids[from + k], with its logprobs) as
  // one event, or finishes the request when a stop condition holds.
  void deliver(const RequestPtr& r, size_t from, std::span<const SampledToken> picked);
  // The final event (by value: it erases the map entry). Nothing when r already finished.
  void finish(RequestPtr r, FinishReason why, RequestOutput out = {});
  // Finishes every running and waiting request with finish reason "abort" and this message.
  void abort_all(const std::string& message);

  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t generation_tokens() const { return generation_tokens_; }
  int64_t cached_tokens() const { return cached_total_; }

 private:
  void fill_counts(const RequestState& r, RequestOutput& out) const;

  const ModelConfig& cfg_;
  RequestQueues& q_;
  KvAdmission& kv_;
  RequestInbox& inbox_;
  int64_t prompt_tokens_ = 0, generation_tokens_ = 0, cached_total_ = 0;
};

}  // namespace dsserve
