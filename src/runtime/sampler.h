// Token choice from one row of logits (host float32), per request: logit_bias, repetition /
// frequency / presence penalties, min_new_tokens suppression of stop tokens, then greedy at
// temperature 0 or sampling from softmax(logits / temperature) cut by top_k, top_p and min_p, with
// the request's own seeded generator (same seed, same output). Also the log-probabilities SGLang
// reports: log_softmax of the model's logits, before any of the above.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/request.h"

namespace dsserve {

class Sampler {
 public:
  // stop_ids: tokens suppressed while fewer than min_new_tokens were generated (eos and stop_token_ids).
  Sampler(const SamplingParams& p, uint64_t seed, std::span<const int32_t> prompt, std::vector<int32_t> stop_ids);
  // Picks the next token; `logits` is a scratch copy that the sampler may modify.
  int32_t sample(std::vector<float>& logits);
  // Records a generated token (for penalties and min_new_tokens); sample() does not.
  void accept(int32_t token);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<int32_t> stop_ids_;
  std::unordered_map<int32_t, int> output_counts_;
  std::vector<int32_t> seen_;  // prompt and output tokens, for the repetition penalty (distinct)
  std::unordered_map<int32_t, char> seen_set_;
  int generated_ = 0;
};

int32_t argmax(std::span<const float> logits);
// log_softmax(logits)[id].
float token_logprob(std::span<const float> logits, int32_t id);
// The k most likely tokens as (logprob, id), best first (ties: lower id first).
std::vector<std::pair<float, int32_t>> top_logprobs(std::span<const float> logits, int k);
// Checks ranges (temperature >= 0, 0 < top_p <= 1, top_k >= -1, 0 <= min_p <= 1, penalties in
// [-2, 2], repetition_penalty in (0, 2], max/min_new_tokens >= 0); throws naming the field.
void validate_sampling_params(const SamplingParams& p, int vocab_size);

}  // namespace dsserve
