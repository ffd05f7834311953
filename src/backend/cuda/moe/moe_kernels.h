// DeepSeekMoE kernels: the router's grouped top-k on float32 logits, the permutation of
// (token, expert) pairs into per-expert row segments and back (the weighted un-permute), and the
// device-side alignment of pairs by expert that feeds the grouped expert products of decode sizes
// (moe_grouped_gemm.h). At prefill sizes the expert products are cuBLASLt calls over the segments
// (see cuda_ops_moe.cpp).
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

// Expert parallelism: out[i] = ids[i] - offset, so this rank's experts become 0..n-1 and every
// other expert falls out of range (the kernels below skip out-of-range pairs).
cudaError_t launch_moe_shift_ids(const int32_t* ids, int32_t* out, int64_t n, int32_t offset, cudaStream_t stream);

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

// Groups the (token, k) pairs by expert without leaving the device (one block; the decode path):
// per-expert counts and their exclusive prefix sum, the compact list of active experts, the pairs
// in expert order, and work items of at most rows_per_item rows each (an expert with more rows
// gets several items). Rows of one expert keep their arrival order (atomics), which changes no
// result: every row is computed on its own and the un-permute sums a token's rows in k order.
// Ids outside [0, experts) take part in nothing (their pair_row is -1).
struct MoeWorkItem {
  int32_t expert, row_begin, row_end, unused;  // rows [row_begin, row_end) of the expert order
};
struct MoeAlignParams {
  const int32_t* topk_ids;  // [pairs] (pair = token * top_k + k)
  int32_t* counts;          // [experts]: pairs routed to each expert
  int32_t* offsets;         // [experts + 1]: first row of each expert in the expert order; [experts] = rows
  int32_t* active;          // [experts]: experts with pairs, ascending (the first *num_active are valid)
  int32_t* num_active;      // [1]
  MoeWorkItem* items;       // [moe_max_work_items(...)] (the first *num_items are valid)
  int32_t* num_items;       // [1]
  int32_t* sorted_pair;     // [pairs]: the pair of each row of the expert order (rows past offsets[experts]: unset)
  int32_t* pair_row;        // [pairs]: the pair's own index, or -1 if its expert id is out of range
  unsigned long long* experts_run;  // [1] or null: incremented by the number of active experts
  int pairs, experts, rows_per_item;
};
constexpr int kMoeAlignMaxExperts = 1024, kMoeAlignMaxPairs = 8192;
// Upper bound on the work items of any routing: each active expert has one partial item at most.
inline int64_t moe_max_work_items(int64_t pairs, int64_t experts, int64_t rows_per_item) {
  return (pairs < experts ? pairs : experts) + pairs / rows_per_item;
}
// Requirements: experts <= kMoeAlignMaxExperts, pairs <= kMoeAlignMaxPairs, rows_per_item >= 1.
cudaError_t launch_moe_align(const MoeAlignParams& p, cudaStream_t stream);

// The decode path's router in one launch: the float32 router product of at most
// kMoeRouterFusedMaxTokens tokens (x BF16 or F32 against the float32 router weight, split over the
// whole GPU), then, in the block that finishes last, each token's choice (moe_route.cuh) and the
// alignment of its pairs by expert (moe_align.cuh). Replaces the conversion of x to float32, the
// router product, the routing kernel and the alignment kernel.
struct MoeRouterFusedParams {
  const void* x;          // [tokens, hidden] F32 or BF16, rows strided by ldx elements
  DType x_dtype;
  int64_t ldx, hidden;
  const float* w;         // [experts, hidden] contiguous, 16-byte aligned
  float* partial;         // [moe_router_fused_splits(hidden), tokens, experts] workspace
  unsigned int* ticket;   // [1]: zero before the launch, zero again after it
  MoeRouteParams route;   // its logits are unused (the kernel's own)
  MoeAlignParams align;   // align.topk_ids = route.topk_ids; experts_run counted by the consumer
  bool pdl = true;
};
constexpr int kMoeRouterFusedMaxTokens = 16;
inline int moe_router_fused_splits(int64_t hidden) { return int((hidden + 511) / 512); }
// Requirements: tokens <= kMoeRouterFusedMaxTokens, hidden % 4 == 0 (16-byte rows), those of
// launch_moe_route and launch_moe_align.
cudaError_t launch_moe_router_fused(const MoeRouterFusedParams& p, cudaStream_t stream);

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
