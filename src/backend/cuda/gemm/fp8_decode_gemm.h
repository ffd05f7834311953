// Decode-size FP8 linear: Y[T, rows] = X[T, K] W[rows, K]^T for T <= kFp8DecodeMaxTokens, with W
// e4m3 and 128x128 float32 block scales (the checkpoint's weight_scale_inv), X BF16 (W8A16: the
// activations are not re-quantized). Memory-bound: every weight byte is read once. The planner
// that splits K so every SM streams is host code beside the launcher (fp8_decode_gemm.cu);
// README.md says what bounds it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

// Token counts up to this run on the decode kernel (CudaBackend::linear); larger ones on cuBLASLt.
constexpr int64_t kFp8DecodeMaxTokens = 64;

struct Fp8DecodeGemmParams {
  const void* x = nullptr;        // [T, K] BF16, row stride ldx elements (ldx % 8 == 0, 16-byte aligned)
  int64_t ldx = 0;
  const uint8_t* w = nullptr;     // [rows, K] e4m3, contiguous, 16-byte aligned
  const float* w_scale = nullptr; // [ceil(rows / 128), scale_ld] F32, scale_ld >= K / 128
  int64_t scale_ld = 0;
  void* y = nullptr;              // [T, ldy] of y_dtype (BF16 or F32); columns [0, rows) are written
  DType y_dtype = DType::BF16;
  int64_t ldy = 0;
  int64_t T = 0, rows = 0, K = 0;  // 1 <= T <= kFp8DecodeMaxTokens, K % 128 == 0
};

// How a product is spread over the GPU: blocks of 4 warps each own 32 * row_warps weight rows;
// the 4 / row_warps warp groups of a block and the `cluster` blocks of a thread-block cluster
// split the K / 128 chunks into k_parts() near-equal parts (at most chunks_per_part each, none
// empty); partial sums meet in shared memory (distributed shared memory across the cluster).
struct Fp8DecodePlan {
  int row_warps = 4;        // 4, 2 or 1
  int cluster = 1;          // 1, 2, 4 or 8 blocks along K
  int64_t chunks_per_part = 0;  // ceil(chunks / k_parts())
  int64_t blocks = 0;       // row tiles x cluster
  int k_parts() const { return cluster * 4 / row_warps; }
};

// The plan for a rows x K product on `sms` SMs holding `blocks_per_sm` blocks each: the fewest K
// parts that give at least two blocks per SM with all of them resident; failing that, the most
// blocks that are all resident; failing that (more row tiles than resident blocks), no split.
Fp8DecodePlan plan_fp8_decode_gemm(int64_t rows, int64_t K, int sms, int blocks_per_sm);

// Runs the product on `stream` (no allocation, no synchronisation: capturable). Returns
// cudaErrorInvalidValue when the parameters break the requirements above.
cudaError_t launch_fp8_decode_gemm(const Fp8DecodeGemmParams& p, cudaStream_t stream);
// The plan launch_fp8_decode_gemm uses for these parameters on the current device.
Fp8DecodePlan fp8_decode_gemm_plan(const Fp8DecodeGemmParams& p);

}  // namespace dsserve::cuda
