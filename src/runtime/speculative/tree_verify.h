// Verifying a request's draft tree in the target: its rows of the verify forward ([last token,
// nodes], node i at position kv_len + depth(i), seeing the root and its ancestors through the tree
// mask), the sampling row of every node (chosen as if its ancestors had been accepted), and the
// acceptance walk over the tokens the target chose.
#pragma once
#include <deque>
#include <span>
#include <vector>

#include "runtime/batch_builder.h"
#include "runtime/constrained_rows.h"
#include "runtime/request_state.h"
#include "runtime/token_choice.h"

namespace dsserve {

// The request's chunk of the verify forward: logits at every row.
SequenceChunk verify_chunk(const RequestState& r);

// Appends the rows choosing the target's token at each row of r's chunk: the root's, then each
// node's as if its ancestors had been accepted (their tokens counted for penalties, min_new_tokens
// and the step, and taken by the grammar). The rows' lists live in `lists`.
void append_verify_rows(RequestState& r, TokenChooser& chooser, ConstraintMasks& masks,
                        std::deque<SamplingRowLists>& lists, std::vector<SamplingRow>& rows);

// Walking down from the root (row 0), a node is accepted while its token is the one chosen at its
// parent's row; the first choice with no matching child is the bonus. picked: the choices at r's
// rows. Returns the rows whose choices are emitted, in order (node x is row x + 1).
std::vector<int> acceptance_walk(const DraftState& d, std::span<const SampledToken> picked);

}  // namespace dsserve
