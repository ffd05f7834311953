// The scheduler's two kinds of step, over what they share (scheduler thread only): a prefill
// (admission of waiting requests and one chunked-prefill forward) and a decode (one token for every
// running request, or one speculative round). Each runs at most one target forward, through
// `forward`, and delivers what it chose.
#pragma once
#include <functional>

#include "runtime/kv_admission.h"
#include "runtime/output_delivery.h"
#include "runtime/scheduler.h"
#include "runtime/speculative/speculative_decoder.h"
#include "runtime/token_choice.h"

namespace dsserve {

struct StepContext {
  ModelRunner& model;
  const SchedulerOptions& opt;
  int32_t trash_slot;
  RequestQueues& q;
  KvAdmission& kv;
  TokenChooser& chooser;
  OutputDelivery& out;
  SpeculativeDecoder* spec;  // null without speculative decoding
  std::function<ForwardOutput(const ForwardBatch&)> forward;

  // Extra cache positions a request may touch beyond its tokens in one round.
  int64_t spec_margin() const { return spec ? spec->cache_margin() : 0; }
};

// Admits waiting requests (continuing a partly prefilled one first) up to the token budget and
// runs one forward over their next chunks. False when nothing could be admitted.
bool run_prefill(StepContext& s);
// One decode step over every running request (retracting the newest when pages run out). Returns
// the tokens it emitted.
int64_t run_decode(StepContext& s);

}  // namespace dsserve
