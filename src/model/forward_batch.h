// ForwardBatch: the flat description of one forward (prefill chunks, decode tokens and verify tokens
// alike are rows of it), built by the runtime on the host and uploaded by the model.
#pragma once
#include <cstdint>
#include <vector>

namespace dsserve {

enum class AttentionMode : uint8_t {
  Expanded,  // non-absorbed: up-project the cached latent per head (prefill / extend)
  Absorbed,  // absorbed into the latent space, multi-query over the 576-wide cache (decode / verify)
};

struct ForwardBatch {
  std::vector<int32_t> input_ids;        // [T]
  std::vector<int32_t> positions;        // [T] RoPE positions
  std::vector<int32_t> query_start;      // [B + 1] row offsets of each sequence's new tokens
  std::vector<int32_t> prefix_lens;      // [B] tokens of each sequence already in the cache
  std::vector<int32_t> page_table;       // [B * max_pages] physical page of each logical page
  int32_t max_pages = 0;
  std::vector<int32_t> out_cache_slots;  // [T] cache slot of each new token: page * page_size + offset
  std::vector<int32_t> logit_rows;       // rows of T whose logits are wanted, in output order
  AttentionMode attention = AttentionMode::Expanded;
  // Speculative trees: per sequence a [qlen, mask_cols] row-major mask over its last mask_cols keys
  // (which tree nodes each node sees), concatenated; empty means causal.
  std::vector<uint8_t> tree_mask;
  std::vector<int32_t> mask_cols;  // [B], with tree_mask
  // The MTP cache stores position t's entry at the slot of token t + 1: its batches set 1.
  int32_t key_shift = 0;

  int num_seqs() const { return int(query_start.size()) - 1; }
  int num_tokens() const { return int(input_ids.size()); }
};

}  // namespace dsserve
