// Allowed-token masks and constraint advances for the scheduler (see constrained_rows.h).
#include "runtime/constrained_rows.h"

#include <algorithm>

#include "core/error.h"
#include "runtime/token_constraint.h"

namespace dsserve {

void ConstraintMasks::apply(const RequestState& r, std::span<const int32_t> path, int32_t eos_id, SamplingRow& row) {
  TokenConstraint* c = r.g.constraint.get();
  if (!c || r.grammar_ended) return;
  int taken = 0;
  for (int32_t t : path) {
    if (!c->accept(t)) break;
    ++taken;
  }
  std::vector<uint32_t>& bits = masks_.emplace_back(static_cast<size_t>(words_), 0u);
  if (c->fill_next_tokens(bits)) {
    if (c->can_end()) {
      const std::vector<int32_t>& ends = r.sampling->stop_ids();
      for (int32_t t : ends) bits[size_t(t) >> 5] |= 1u << (t & 31);
      if (c->is_complete()) bits[size_t(eos_id) >> 5] |= 1u << (eos_id & 31);  // even with ignore_eos
    }
    if (c->is_complete()) row.suppressed = {};
    row.allowed = bits;
  }
  c->rollback(taken);
}

void advance_constraint(RequestState& r, int32_t token, int32_t eos_id) {
  TokenConstraint* c = r.g.constraint.get();
  if (!c || r.grammar_ended) return;
  const bool end = c->can_end() && (token == eos_id || std::find(r.sampling->stop_ids().begin(), r.sampling->stop_ids().end(),
                                                                  token) != r.sampling->stop_ids().end());
  if (c->accept(token)) return;
  DS_CHECK(end, "request {}: token {} is not allowed by its grammar", r.g.rid, token);
  r.grammar_ended = true;
}

}  // namespace dsserve
