// Token choice from one row of logits (host float32): greedy at temperature 0, otherwise sampling
// from softmax(logits / temperature) with a per-request seeded generator; and the log-probabilities
// SGLang reports (log_softmax of the unscaled logits, top-k by logprob).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace dsserve {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> logits);
// log_softmax(logits)[id].
float token_logprob(std::span<const float> logits, int32_t id);
// The k most likely tokens as (logprob, id), best first (ties: lower id first).
std::vector<std::pair<float, int32_t>> top_logprobs(std::span<const float> logits, int k);

}  // namespace dsserve
