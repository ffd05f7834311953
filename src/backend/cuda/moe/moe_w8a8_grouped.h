// Grouped W8A8 expert products of the decode path, the shared expert included: for every work item
// of moe_align (an expert and up to rows_per_item of its rows) and for the shared expert's items
// (every token), Y = Xq W[e]^T on FP8 mma.sync with the block-scale promotion of
// gemm/w8a8_mainloop.cuh, reading each expert's weights once per item. Activations arrive quantized
// (per row per 128 channels): the tokens from the norm before the MoE, gate_up's output quantized
// in its own epilogue. Row numbering over [0, pairs + tokens): rows [0, pairs) are the routed pairs
// in expert order (moe_align's sorted_pair), row pairs + t the shared expert's row of token t.
// Launch shapes depend on T, top_k, E and the weight shapes only (capturable).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/moe/moe_grouped_gemm.h"

namespace dsserve::cuda {

struct MoeW8A8Params {
  MoeGemmKind kind = MoeGemmKind::GateUp;
  // GateUp: the tokens [tokens, ldxq] e4m3 with scales [K / 128, xs_ld]; input row of row r is its
  // token. Down: gate_up's output [pairs + tokens, ldxq] with scales [K / 128, xs_ld]; row r reads row r.
  const uint8_t* xq = nullptr;
  int64_t ldxq = 0;  // bytes, % 16 == 0
  const float* xs = nullptr;
  int64_t xs_ld = 0;
  const int32_t* sorted_pair = nullptr;  // [pairs]
  int top_k = 0;
  int64_t pairs = 0, tokens = 0;
  const MoeWorkItem* items = nullptr;    // routed items; the first *num_items are valid
  const int32_t* num_items = nullptr;
  int64_t max_items = 0;                 // grid rows for routed items
  int shared_items = 0;                  // grid rows for the shared expert (0: none): ceil(tokens / rows_per_item)
  const uint8_t* w = nullptr;            // [E, N, K] e4m3 (64-bit expert offsets)
  const float* w_scale = nullptr;        // [E, N / 128, scale_ld]
  int64_t scale_ld = 0;
  const uint8_t* shared_w = nullptr;     // [N, K] e4m3, or null
  const float* shared_scale = nullptr;   // [N / 128, shared_scale_ld]
  int64_t shared_scale_ld = 0;
  int64_t N = 0, K = 0;                  // GateUp: N = 2 I (gate rows, then up rows); K % 128 == 0, N % 128 == 0
  int rows_per_item = 8;                 // 8 or 16 (moe_w8a8_rows_per_item)
  // GateUp: a = silu(gate) * up of row r, quantized per 128 columns: yq [pairs + tokens, ldyq] e4m3,
  // ys [I / 128, ys_ld] (row contiguous).
  uint8_t* yq = nullptr;
  int64_t ldyq = 0;
  float* ys = nullptr;
  int64_t ys_ld = 0;
  // Down: y [pairs + tokens, ldy] BF16; routed row r lands at its pair sorted_pair[r], shared rows at r.
  void* y = nullptr;
  int64_t ldy = 0;
  // When set, block (0, 0) adds *num_active to *experts_run (the grouping came from the fused
  // router, which does not count).
  unsigned long long* experts_run = nullptr;
  const int32_t* num_active = nullptr;
  bool pdl = true;
};

// Rows per work item: 8 while the mean per expert is at most 2, else 16 (an expert with more rows
// gets several items; 32-row items would not fit the registers beside two m tiles of sums).
inline int moe_w8a8_rows_per_item(int64_t pairs, int64_t experts) { return pairs <= 2 * experts ? 8 : 16; }

bool moe_w8a8_supported(const MoeW8A8Params& p);
cudaError_t launch_moe_w8a8(const MoeW8A8Params& p, cudaStream_t stream);

// out[t, :] = sum_k topk_weights[t, k] y[pair_row[t top_k + k], :] + y[pairs + t, :] (the shared
// expert's row, when shared), float32 sums in a fixed order, stored BF16.
struct MoeCombineParams {
  const void* y;              // [pairs + tokens, hidden] BF16 contiguous
  const int32_t* pair_row;    // [tokens * top_k]: -1 for pairs of experts this rank does not hold
  const float* topk_weights;  // [tokens, top_k]
  bool shared = false;
  void* out;                  // [tokens, hidden] BF16 contiguous
  int64_t tokens, hidden, pairs;
  int top_k;
  bool pdl = true;
};
cudaError_t launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
