// Builds the flat ForwardBatch from the sequences taking part in one forward: each contributes a
// run of new tokens after its cached prefix, and asks for logits at some of them.
#pragma once
#include <vector>

#include "model/forward_batch.h"
#include "runtime/page_pool.h"

namespace dsserve {

struct SequenceChunk {
  const SequencePages* pages;           // must hold prefix_len + tokens.size() (+ key_shift) tokens
  int64_t prefix_len;                   // tokens of this sequence already in the cache
  std::vector<int32_t> tokens;          // new tokens; token i goes to logical position prefix_len + i
  std::vector<int32_t> logit_offsets;   // offsets into tokens whose logits are wanted
  std::vector<int32_t> positions{};     // RoPE positions; empty: prefix_len + i
  std::vector<uint8_t> tree_mask{};     // [n, mask_cols] over the last mask_cols keys; empty: causal
  int64_t mask_cols = 0;                // 0: n (the mask covers the new tokens)
  int64_t discard_before = 0;           // tokens at logical positions below this are recomputed for
                                        // their outputs only: their cache writes go to the trash slot
};

struct BatchLayout {
  int page_size = 1;
  AttentionMode mode = AttentionMode::Expanded;
  int32_t key_shift = 0;   // 1 for the MTP cache (see ForwardBatch::key_shift)
  int32_t trash_slot = 0;  // a slot no sequence reads (the pool reserves page 0 for it)
};

ForwardBatch build_forward_batch(const std::vector<SequenceChunk>& chunks, const BatchLayout& layout);
inline ForwardBatch build_forward_batch(const std::vector<SequenceChunk>& chunks, int page_size, AttentionMode mode) {
  return build_forward_batch(chunks, BatchLayout{page_size, mode});
}

}  // namespace dsserve
