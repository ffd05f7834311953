// The scheduler's side of structured output: the allowed-token masks of constrained requests for
// one Backend::sample call (alive until the call returns), and advancing a request's constraint
// over the token chosen for it. End tokens (eos unless ignore_eos, stop_token_ids) are allowed only
// where the grammar may end; once it is complete nothing else is, eos ends it even with ignore_eos,
// and min_new_tokens yields.
#pragma once
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "runtime/request_state.h"

namespace dsserve {

class ConstraintMasks {
 public:
  explicit ConstraintMasks(int64_t vocab_size) : words_((vocab_size + 31) / 32) {}

  // Constrains `row` (r's next token after `path`: tokens chosen but not yet accepted, a
  // speculative draft's ancestors) when r has a constraint. A path the grammar rejects (a draft
  // that cannot be accepted) gets the mask of its longest valid prefix.
  void apply(const RequestState& r, std::span<const int32_t> path, int32_t eos_id, SamplingRow& row);

 private:
  int64_t words_;
  std::deque<std::vector<uint32_t>> masks_;
};

// Takes the token chosen for r into its constraint. An end token where the grammar may end sets
// r.grammar_ended. Throws when the token breaks the grammar (the mask allowed nothing of the kind).
void advance_constraint(RequestState& r, int32_t token, int32_t eos_id);

}  // namespace dsserve
