// DeepSeekMoE kernels: the router's grouped top-k on float32 logits, and the permutation of
// (token, expert) pairs into per-expert row segments and back (the weighted un-permute). The
// expert products themselves are cuBLASLt calls over those segments (see cuda_ops_moe.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda {

// noaux_tc (sigmoid) or softmax scores; experts chosen on score + bias within the best
// topk_group of n_group groups (strength: sum of the two best biased scores for sigmoid, the best
// for softmax); weights are the unbiased scores, normalised if asked, times the scaling factor.
// Ties go to the lower index, as a stable sort would.
struct MoeRouteParams {
  const float* logits;    // [tokens, experts]
  const float* bias;      // [experts] or null
  int32_t* topk_ids;      // [tokens, top_k]
  float* topk_weights;    // [tokens, top_k]
  int tokens, experts, top_k, n_group, topk_group;
  bool sigmoid, norm_topk_prob;
  float routed_scaling_factor;
};
// Requirements: experts <= 512, experts % n_group == 0, n_group <= 32, top_k <= 32.
cudaError_t launch_moe_route(const MoeRouteParams& p, cudaStream_t stream);

// counts[e] += number of (token, k) pairs routed to expert e (counts must be zeroed first).
struct MoeCountParams {
  const int32_t* topk_ids;  // [pairs]
  int32_t* counts;          // [experts]
  int64_t pairs;
  int experts;
};
cudaError_t launch_moe_count(const MoeCountParams& p, cudaStream_t stream);

// Places every pair in its expert's row segment: pos = seg_offset[e] + (arrival order), with
// row_token[pos] = token and pair_row[pair] = pos. cursor must be zeroed; row_token pre-filled
// with -1 marks padding rows. Also writes, for every row of every segment, the segment's first
// row and length (for the segmented FP8 activation scales).
struct MoeScatterParams {
  const int32_t* topk_ids;    // [tokens * top_k]
  const int32_t* seg_offset;  // [experts]: first row of each expert's segment
  const int32_t* seg_rows;    // [experts]: padded rows of each segment
  int32_t* cursor;            // [experts]
  int32_t* row_token;         // [rows]
  int32_t* pair_row;          // [tokens * top_k]
  int32_t* row_seg_start;     // [rows]
  int32_t* row_seg_rows;      // [rows]
  int64_t pairs;
  int top_k, experts;
};
cudaError_t launch_moe_scatter(const MoeScatterParams& p, cudaStream_t stream);

// out[t, :] = sum_k topk_weights[t, k] * y[pair_row[t * top_k + k], :] (float32 sum, stored BF16).
struct MoeUnpermuteParams {
  const void* y;              // [rows, hidden] BF16 contiguous (expert outputs in segment order)
  const int32_t* pair_row;    // [tokens * top_k]
  const float* topk_weights;  // [tokens, top_k]
  void* out;                  // [tokens, hidden] BF16 contiguous
  int64_t tokens, hidden;
  int top_k;
};
cudaError_t launch_moe_unpermute(const MoeUnpermuteParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
