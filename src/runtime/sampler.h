// A request's sampling state between steps, and the rows it hands Backend::sample: logit_bias,
// repetition / frequency / presence penalties, min_new_tokens suppression of stop tokens, then
// greedy at temperature 0 or sampling from softmax(logits / temperature) cut by top_k, top_p and
// min_p, with randomness from (seed, step) (same seed, same output; the rules and their tie
// treatment: backend/sampling_math.h). The token choice itself runs in the backend, where the
// logits are. Also the log-probabilities SGLang reports (log_softmax of the model's logits, before
// any of the above) of host rows, for the prompt positions asked for.
#pragma once
#include <cstdint>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "runtime/request.h"

namespace dsserve {

// Storage for the lists of a row built by SamplingState::row_after.
struct SamplingRowLists {
  std::vector<std::pair<int32_t, int32_t>> output_counts;
  std::vector<int32_t> seen;
};

class SamplingState {
 public:
  // stop_ids: tokens suppressed while fewer than min_new_tokens were generated (eos and stop_token_ids).
  SamplingState(const SamplingParams& p, uint64_t seed, std::span<const int32_t> prompt, std::vector<int32_t> stop_ids);
  // The row choosing the next token (step = tokens generated so far). Its lists point into this
  // state: valid until the next accept(). Log-probabilities are not asked for (the caller sets them).
  SamplingRow row() const;
  // The row choosing the token that follows `path` (tokens not yet accepted, as if they had been:
  // a speculative draft's ancestors); its lists live in `lists`, which must outlive the row.
  SamplingRow row_after(std::span<const int32_t> path, SamplingRowLists& lists) const;
  // Records a generated token (for penalties, min_new_tokens and the step).
  void accept(int32_t token);
  int generated() const { return generated_; }
  // The tokens that end the request (eos unless ignore_eos, and stop_token_ids).
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  uint64_t seed() const { return seed_; }

 private:
  SamplingRow base_row() const;

  SamplingParams p_;
  uint64_t seed_;
  std::vector<std::pair<int32_t, float>> bias_;  // distinct tokens; a token listed twice gets the sum
  std::vector<int32_t> stop_ids_;
  bool counts_used_, seen_used_;                          // the penalties that need them are on
  std::vector<std::pair<int32_t, int32_t>> counts_;       // output tokens and their counts, distinct
  std::unordered_map<int32_t, size_t> count_index_;
  std::vector<int32_t> seen_;  // prompt and output tokens, distinct (repetition penalty)
  std::unordered_set<int32_t> seen_set_;
  int generated_ = 0;
};

// log_softmax(logits)[id].
float token_logprob(std::span<const float> logits, int32_t id);
// The k most likely tokens as (logprob, id), best first (ties: lower id first).
std::vector<std::pair<float, int32_t>> top_logprobs(std::span<const float> logits, int k);

}  // namespace dsserve
