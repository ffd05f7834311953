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
  // Largest thread-block cluster the plan may use: 8 on sm_90; 1 for the sm80 kernel set (sm_80 has
  // no clusters; devices before compute capability 9.0 get 1 whatever this says).
  int max_cluster = 8;
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

// What the device holds at once: its SMs, and the blocks of one kernel variant resident together
// when launched in clusters of 1, 2, 4 and 8 (clusters must fit in one GPC, so the larger ones can
// hold fewer than SMs x blocks per SM).
struct Fp8DecodeCapacity {
  int sms = 132;
  int64_t resident[4] = {396, 396, 396, 396};  // by cluster size 1, 2, 4, 8
  static Fp8DecodeCapacity uniform(int sms, int blocks_per_sm) {
    Fp8DecodeCapacity c;
    c.sms = sms;
    for (auto& r : c.resident) r = int64_t(sms) * blocks_per_sm;
    return c;
  }
};

// The plan for a rows x K product: the fewest K parts (then the most rows per block) that give at
// least two blocks per SM with all of them resident; failing that, the most blocks that are all
// resident; failing that (more row tiles than resident blocks), no split.
Fp8DecodePlan plan_fp8_decode_gemm(int64_t rows, int64_t K, const Fp8DecodeCapacity& cap);

// Queries the current device's capacity for every kernel variant once (the launcher would on its
// first call): called at load time, so that no query runs while a CUDA graph is being recorded.
cudaError_t prepare_fp8_decode_gemm();

// Runs the product on `stream` (no allocation, no synchronisation: capturable). Returns
// cudaErrorInvalidValue when the parameters break the requirements above.
cudaError_t launch_fp8_decode_gemm(const Fp8DecodeGemmParams& p, cudaStream_t stream);
// The plan launch_fp8_decode_gemm uses for these parameters on the current device.
Fp8DecodePlan fp8_decode_gemm_plan(const Fp8DecodeGemmParams& p);

}  // namespace dsserve::cuda
