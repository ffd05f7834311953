// Block-scaled FP8 GEMM for Hopper (sm_90a): D = (A x B^T) with A e4m3 scaled per row per 128
// columns of K and B e4m3 scaled per 128x128 block (DeepSeek-V3's W8A8 "block FP8"), float32
// accumulation promoted per 128-wide K block, BF16 or float32 output. Three uses share one kernel:
// a plain product (batch 1: the FP8 linears at prefill sizes), a strided batch (the per-head
// products of absorbed MLA), and an expert-grouped product (MoE prefill: rows grouped by expert,
// one launch for every expert, the group sizes read on the device). See README.md in this folder.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace dsserve::cuda {

struct Fp8GemmSm90Params {
  // A: e4m3, [batch][M, K], K contiguous; row m of batch b at a + b * a_batch_stride + m * lda
  // (bytes; lda, a_batch_stride and the address multiples of 16).
  const uint8_t* a = nullptr;
  int64_t lda = 0, a_batch_stride = 0;
  // A scales: float32, [batch][K / 128][a_scale_ld], row index contiguous (the quantizer's
  // VEC128 layout); a_scale_ld >= rows, a multiple of 4.
  const float* a_scale = nullptr;
  int64_t a_scale_ld = 0;
  // B: e4m3, [batch or experts][N, K], K contiguous (the weight as stored); strides in bytes.
  const uint8_t* b = nullptr;
  int64_t ldb = 0, b_batch_stride = 0;
  // B scales: float32, [batch or experts][ceil(N / 128)][b_scale_ld] (the checkpoint's
  // weight_scale_inv blocks); b_scale_batch_stride in floats.
  const float* b_scale = nullptr;
  int64_t b_scale_ld = 0, b_scale_batch_stride = 0;
  // D: [batch][M, N], rows strided by ldd, batches by d_batch_stride (elements); BF16 or float32.
  void* d = nullptr;
  bool d_f32 = false;
  int64_t ldd = 0, d_batch_stride = 0;
  int64_t M = 0, N = 0, K = 0;  // grouped: M = rows of A and of the A scales (every segment)
  int batch = 1;                // batched: the batch count; grouped: the experts
  // Grouped (MoE prefill): group_end[e] = end row of expert e's segment of A; the segment starts
  // at the previous end rounded up to 128 rows (fp8_gemm_layout.h: group_start). B, its scales
  // and D's rows are the expert's. Null for batched products.
  const int32_t* group_end = nullptr;  // [batch] on the device
  // Grouped: the D row of each A row (negative: not stored), so the products land in pair order;
  // null: D row = A row.
  const int32_t* d_row = nullptr;  // [M] on the device
  // Force a tile shape (tests, benchmarks); 0: the launcher's choice.
  int force_bm = 0, force_bn = 0;
  // CTA pairs sharing one operand through multicast copies: 1 on, 0 off, -1 the launcher's choice.
  int pairs = -1;
  // Consumer warpgroups: 1 pipelined (two accumulator sets: K block s + 1's wgmma runs while K
  // block s is promoted and the tile stored; 128 x 128 and 128 x 112 tiles), 0 classic (one set:
  // issue, wait, promote), -1 the launcher's choice.
  int pipelined = -1;
  // 128 x 128 tiles: stage the output in shared memory for bulk tensor stores where D allows (1),
  // or store column pairs from registers (0).
  int staged_store = 1;
};

// Whether the kernel takes this problem (shapes, strides, alignment); otherwise `why` says what
// it refused, so the caller can name its fallback.
bool fp8_gemm_sm90_supported(const Fp8GemmSm90Params& p, std::string* why = nullptr);
// Runs the product on the stream (no synchronisation, no allocation: graph-capturable).
cudaError_t launch_fp8_gemm_sm90(const Fp8GemmSm90Params& p, cudaStream_t stream);
// The tile shape the launcher picks for p ("128x136"), for logs and benchmarks.
std::string fp8_gemm_sm90_tile(const Fp8GemmSm90Params& p);
// CTAs of the most recent launch (benchmarks print it beside CTA-pair variants).
int fp8_gemm_sm90_last_grid();
// Whether this device can run the kernel (compute capability 9.0).
bool fp8_gemm_sm90_device_ok();

}  // namespace dsserve::cuda
