// Grouped expert products for decode sizes: for every work item of moe_align (an expert and up to
// rows_per_item of its rows), Y[row, :] = X[in_row(row), :] W[e]^T, reading expert e's weight once
// per item. Weights BF16 or FP8 e4m3 with 128x128 block scales (dequantized in registers exactly
// as the CPU oracle does: e4m3 x scale in float32, rounded to BF16); activations BF16; float32
// accumulation on the tensor cores (mma.sync m16n8k16). Launch configuration depends on the shapes
// and on the number of routed pairs only, never on the routing itself, so it can be captured.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/moe/moe_kernels.h"

namespace dsserve::cuda {

enum class MoeGemmKind {
  // gate_up fused with SiLU-and-mul: W [E, 2 * inter, K] (gate rows, then up rows); input row of
  // row r = sorted_pair[r] / top_k (the token); y[r, i] = silu(x W[i]) * (x W[inter + i]), rows in
  // expert order.
  GateUp,
  // down: W [E, N, K]; input row of row r = r (the gate_up output); y[sorted_pair[r], :] = x W^T,
  // rows in pair order (what the weighted un-permute reads).
  Down,
};

struct MoeGroupedGemmParams {
  MoeGemmKind kind = MoeGemmKind::GateUp;
  const void* x = nullptr;  // [*, K] BF16, rows strided by ldx elements (16-byte aligned base and rows)
  int64_t ldx = 0;
  const int32_t* sorted_pair = nullptr;    // [pairs] from moe_align
  int top_k = 0;
  const MoeWorkItem* items = nullptr;      // [grid.y] from moe_align
  const int32_t* num_items = nullptr;      // [1]
  bool fp8 = false;
  const void* w = nullptr;                 // [E, N, K] BF16 or e4m3 (64-bit expert offsets)
  const float* w_scale = nullptr;          // fp8: [E, ceil(N / 128), scale_ld]
  int64_t scale_ld = 0;
  int64_t N = 0, K = 0;                    // weight rows (2 * inter for GateUp) and input features
  void* y = nullptr;                       // BF16 [*, N] (Down) or [*, N / 2] (GateUp), rows strided by ldy
  int64_t ldy = 0;
  int rows_per_item = 8;                   // 8, 16 or 32 (moe_grouped_rows_per_item)
  int64_t max_items = 0;                   // grid.y: moe_max_work_items(pairs, experts, rows_per_item)
};

// Rows per work item for a batch of `pairs` routed pairs over `experts` experts: 8 while the mean
// per expert is at most 2, 16 up to 8, else 32 (more rows per item cost registers and idle tensor
// work; fewer re-read an expert's weights once per extra item).
inline int moe_grouped_rows_per_item(int64_t pairs, int64_t experts) {
  return pairs <= 2 * experts ? 8 : pairs <= 8 * experts ? 16 : 32;
}

// Requirements: K % 8 == 0, ldx % 8 == 0, ldy % 2 == 0, 16-byte aligned x; FP8: K % 128 == 0 and
// N % 128 == 0; GateUp: N even; rows_per_item in {8, 16, 32}; max_items <= 65535.
cudaError_t launch_moe_grouped_gemm(const MoeGroupedGemmParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
