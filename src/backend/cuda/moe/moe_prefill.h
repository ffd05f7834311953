// The MoE prefill path's device-side grouping and its fused SiLU-and-mul quantization, around the
// expert-grouped sm90 FP8 GEMM (gemm/sm90): no host read-back of the counts, one launch per
// product for every expert.
// - moe_prefill_group: counts the (token, k) pairs per expert, lays the experts' row segments
//   out one after another, each starting on a multiple of kGroupBlockM (128) rows (group_end[e]
//   = its end row; the start is the previous end rounded up: sm90::group_start), and places every
//   pair in its expert's segment (row_token: the token of each row, -1 for padding; pair_row: the
//   row of each pair, for the un-permute). The rows of all segments never exceed
//   moe_prefill_max_rows(pairs, experts).
// - moe_silu_quant: act = SiLU(gate) * up of every row that holds a pair (BF16-rounded, as
//   silu_mul stores it), quantized per 128 columns to e4m3 with one float32 scale per row and
//   block (the activation layout the FP8 GEMM reads: scales [I / 128][rows], row index
//   contiguous). Padding rows are left as they are: every product row depends on its own A row
//   only, and padding rows are never stored.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/gemm/sm90/fp8_gemm_layout.h"

namespace dsserve::cuda {

constexpr int kMoePrefillMaxExperts = 1024;

// Rows of the grouped layout for any routing: sm90::grouped_max_rows.
inline int64_t moe_prefill_max_rows(int64_t pairs, int64_t experts) { return sm90::grouped_max_rows(pairs, experts); }

struct MoePrefillGroupParams {
  const int32_t* topk_ids;     // [pairs] (pair = token * top_k + k); ids outside [0, experts) skip
  int32_t* counts;             // [experts] scratch
  int32_t* cursor;             // [experts] scratch
  int32_t* group_end;          // [experts] out
  int32_t* row_token;          // [max_rows] out: the token of each row, -1 for padding
  int32_t* pair_row;           // [pairs] out: the pair's row, or -1 if its expert is out of range
  unsigned long long* experts_run;  // [1] or null: incremented by the number of active experts
  int64_t pairs, max_rows;
  int top_k, experts;          // experts <= kMoePrefillMaxExperts
};
cudaError_t launch_moe_prefill_group(const MoePrefillGroupParams& p, cudaStream_t stream);

struct MoeSiluQuantParams {
  const void* gate_up;     // [rows, 2 I] BF16 (gate columns, then up columns)
  const int32_t* row_token;  // [rows]: rows with a negative token are skipped
  uint8_t* q;              // [rows, I] e4m3
  float* scale;            // [I / 128, rows]
  int64_t rows, inter;     // inter % 128 == 0
};
cudaError_t launch_moe_silu_quant(const MoeSiluQuantParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
