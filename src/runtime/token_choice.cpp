// Token choice for the scheduler (see token_choice.h).
#include "runtime/token_choice.h"

#include "runtime/constrained_rows.h"

namespace dsserve {

SamplingState& TokenChooser::sampling_state(RequestState& r) {
  if (!r.sampling) {
    std::vector<int32_t> stop_ids = r.g.sampling.stop_token_ids;
    if (!r.g.sampling.ignore_eos) stop_ids.push_back(cfg_.eos_token_id);
    uint64_t seed = r.g.sampling.seed ? *r.g.sampling.seed : random_seed_ + 7919 * (++seed_counter_);
    r.sampling.emplace(r.g.sampling, seed, r.g.input_ids, std::move(stop_ids));
  }
  return *r.sampling;
}

SamplingRow TokenChooser::with_logprobs(const RequestState& r, SamplingRow row) {
  row.want_logprob = r.g.return_logprob;
  row.top_logprobs = r.g.return_logprob ? r.g.top_logprobs_num : 0;
  return row;
}

std::vector<SampledToken> TokenChooser::choose(Backend& be, const Tensor& logits,
                                               const std::vector<RequestState*>& reqs) {
  std::vector<SamplingRow> rows;
  ConstraintMasks masks(cfg_.vocab_size);
  for (RequestState* r : reqs) {
    rows.push_back(with_logprobs(*r, sampling_state(*r).row()));
    masks.apply(*r, {}, cfg_.eos_token_id, rows.back());
  }
  std::vector<SampledToken> picked = be.sample(logits, rows);
  for (size_t i = 0; i < reqs.size(); ++i) accept(*reqs[i], picked[i].token);
  return picked;
}

void TokenChooser::accept(RequestState& r, int32_t token) {
  r.sampling->accept(token);
  advance_constraint(r, token, cfg_.eos_token_id);
}

}  // namespace dsserve
