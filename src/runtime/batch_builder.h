// Builds the flat ForwardBatch from the sequences taking part in one forward: each contributes a
// run of new tokens after its cached prefix, and asks for logits at some of them.
#pragma once
#include <vector>

#include "model/forward_batch.h"
#include "runtime/page_pool.h"

namespace dsserve {

struct SequenceChunk {
  const SequencePages* pages;           // must already hold prefix_len + tokens.size() tokens
  int64_t prefix_len;                   // tokens of this sequence already in the cache
  std::vector<int32_t> tokens;          // new tokens
  std::vector<int32_t> logit_offsets;   // offsets into tokens whose logits are wanted
};

ForwardBatch build_forward_batch(const std::vector<SequenceChunk>& chunks, int page_size, AttentionMode mode);

}  // namespace dsserve
