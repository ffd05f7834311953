// Products with quantized weights, Y[T, N] = X[T, K] W[N, K]^T, on mma.sync (sm_80+: no Hopper-only
// instruction, so they are also the Ampere path):
// - W4A16 (AWQ): 4-bit weights (repacked at load, awq_repack.h) dequantized in registers to BF16
//   (q - zero, exact), BF16 activations, float32 accumulation; each group's partial sums are scaled
//   by the group's F16 scale in float32 (m16n8k16).
// - W8A8 (INT8): int8 weights as stored, activations quantized per token (channel INT8) or per
//   token and 128 channels (block INT8) by int8_quant.h, int32 accumulation (m16n8k32); block INT8
//   promotes each 128-wide K block to float32 with its two scales, channel INT8 scales the int32
//   sum by the token's and the row's scale.
// Decode sizes (T <= kQuantSkinnyMaxTokens) run the streaming kernel (quant_skinny.cu: every weight
// byte read once, K split over blocks when the rows alone cannot fill the GPU, the parts summed in
// a fixed order by the last block of each tile); larger T the tiled kernel (quant_tiled.cu:
// 128 x 128 tiles through shared memory). The grouped form runs the routed experts of the MoE
// decode path (work items of moe_align). README.md says what bounds each.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/moe/moe_kernels.h"
#include "core/dtype.h"

namespace dsserve::cuda {

enum class QuantKind : uint8_t { W4A16, I8Block, I8Channel };

constexpr int64_t kQuantSkinnyMaxTokens = 64;

// The weights of one product (a linear segment, or expert 0 of a stack).
struct QuantWeights {
  QuantKind kind = QuantKind::W4A16;
  const void* w = nullptr;      // W4A16: repacked words [N / 16][K / 64][32][4]; I8: int8 [N, K] row-major
  const void* scale = nullptr;  // W4A16: scale-zero words u32 [K / G, scale_ld]; I8Block: F32 [ceil(N / 128),
                                // scale_ld]; I8Channel: F32 [N]
  int64_t scale_ld = 0;         // W4A16: >= N; I8Block: >= ceil(K / 128)
  int group = 0;                // W4A16: input channels per scale (a multiple of 64 dividing K)
  int64_t N = 0, K = 0;
};

// Activations: W4A16 BF16 [rows, K]; I8 int8 [rows, K] with their scales (int8_quant.h).
struct QuantActivations {
  const void* x = nullptr;
  int64_t ldx = 0;                 // elements; a multiple of 8 (W4A16) or 16 (I8); 16-byte aligned base
  const float* x_scale = nullptr;  // I8Channel: [rows]; I8Block: [rows, x_scale_ld]
  int64_t x_scale_ld = 0;
};

struct QuantGemmParams {
  QuantWeights w;
  QuantActivations x;
  void* y = nullptr;  // [T, ldy] of y_dtype (BF16 or F32); columns [0, N) are written
  DType y_dtype = DType::BF16;
  int64_t ldy = 0;
  int64_t T = 0;
  // Split K (decode sizes): float32 partial sums [splits, T, N] (quant_gemm_workspace_floats) and
  // one counter per tile of rows, zero before the first call (each call leaves them zero).
  float* workspace = nullptr;
  int32_t* counters = nullptr;
};

// What the launcher will run for these shapes on `sms` multiprocessors.
struct QuantGemmPlan {
  bool skinny = true;
  int splits = 1;          // K parts (skinny)
  int64_t row_tiles = 0;   // blocks along N
};
QuantGemmPlan plan_quant_gemm(QuantKind kind, int64_t T, int64_t N, int64_t K, int group, int sms);
int64_t quant_gemm_workspace_floats(const QuantGemmPlan& plan, int64_t T, int64_t N);
constexpr int64_t kQuantGemmMaxCounters = 1 << 16;

// Whether the kernels take a weight of these shapes (else the caller keeps it in BF16).
bool quant_gemm_supports(QuantKind kind, int64_t N, int64_t K, int group);

// Runs Y = X W^T on `stream` with `sms` multiprocessors in mind (no allocation, no host
// synchronisation: capturable). cudaErrorInvalidValue when the parameters break the requirements.
cudaError_t launch_quant_gemm(const QuantGemmParams& p, int sms, cudaStream_t stream);

// Routed experts at decode sizes, one work item (an expert and up to rows_per_item of its rows)
// per block row, as moe_grouped_gemm.h: GateUp gathers input rows by token (sorted_pair / top_k)
// and writes silu(gate) * up for the item's rows in expert order (N = 2 * inter rows: gate, then
// up); Down reads rows in expert order and writes them to pair order (y[sorted_pair[r]]).
enum class QuantGroupedKind { GateUp, Down };
struct QuantGroupedParams {
  QuantGroupedKind kind = QuantGroupedKind::GateUp;
  QuantWeights w;                      // expert 0; expert e's at + e * w_expert_bytes / scale_expert_elems
  int64_t w_expert_bytes = 0, scale_expert_elems = 0;
  QuantActivations x;
  const int32_t* sorted_pair = nullptr;
  int top_k = 0;
  const MoeWorkItem* items = nullptr;
  const int32_t* num_items = nullptr;
  void* y = nullptr;  // BF16 [*, ldy]
  int64_t ldy = 0;
  int rows_per_item = 8;  // 8, 16 or 32
  int64_t max_items = 0;
};
cudaError_t launch_quant_grouped_gemm(const QuantGroupedParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
