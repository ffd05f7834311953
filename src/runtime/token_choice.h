// How the scheduler chooses tokens: each request's sampling state (made at its first choice, seeded
// from the run's seed when the request brings none), the rows it hands Backend::sample (with the
// log-probabilities the request reports and the mask of its constraint), and one backend call for
// the next token of a whole batch, taken into each request's sampling state and constraint.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "io/model_config.h"
#include "runtime/request_state.h"

namespace dsserve {

class TokenChooser {
 public:
  TokenChooser(const ModelConfig& cfg, uint64_t random_seed) : cfg_(cfg), random_seed_(random_seed) {}

  // The request's sampling state, made at its first token choice: a request without a seed of its
  // own takes the next of the run's seeds, in the order requests first choose.
  SamplingState& sampling_state(RequestState& r);
  // `row` asking for the log-probabilities the request reports.
  static SamplingRow with_logprobs(const RequestState& r, SamplingRow row);
  // Chooses the next token of every request, reqs[i] from row i of logits, in one backend call,
  // and records it in the request's sampling state (and its constraint, for structured output).
  std::vector<SampledToken> choose(Backend& be, const Tensor& logits, const std::vector<RequestState*>& reqs);
  // Takes a token chosen elsewhere (a speculative row) into r's sampling state and constraint.
  void accept(RequestState& r, int32_t token);

  int32_t eos() const { return cfg_.eos_token_id; }
  int64_t vocab_size() const { return cfg_.vocab_size; }

 private:
  const ModelConfig& cfg_;
  uint64_t random_seed_;
  uint64_t seed_counter_ = 0;
};

}  // namespace dsserve
