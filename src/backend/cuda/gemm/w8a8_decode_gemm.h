// Decode-size W8A8 linear on Hopper: Y[T, rows] = (Xq[T, K] * xs) (W[rows, K] * ws)^T for
// 1 <= T <= kW8A8DecodeMaxTokens, with W e4m3 and its 128x128 float32 block scales (the
// checkpoint's weight_scale_inv) and X already quantized to e4m3 with one scale per token per 128
// channels (by the op that produced it, or gemm/fp8_quant.cu). FP8 mma.sync (m16n8k32) with the
// weights as the M side and the tokens as N, float32 sums promoted by both scales per 128-wide K
// chunk (as DeepGEMM's block-scaled products). Weight-bandwidth bound: every weight byte is read
// once, batch 1 included, without padding. Design and measured figures: gemm/README.md.
// Epilogues: store (BF16 or float32 rows) or the MLP's SiLU-and-mul fused with the e4m3
// quantization of its output (the down projection's input), which removes a kernel and the
// [T, 2I] intermediate.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

constexpr int64_t kW8A8DecodeMaxTokens = 64;

enum class W8A8Epilogue {
  Store,        // y[t, r] = sum (BF16 or F32)
  SiluMulQuant, // rows = 2 I (gate rows [0, I), up rows [I, 2I)); a = silu(gate) * up in float32,
                // quantized per token per 128 columns into yq / ys (I % 128 == 0,
                // T <= 16)
};

struct W8A8DecodeParams {
  const uint8_t* xq = nullptr;  // [T, ldxq] e4m3 (ldxq % 16 == 0, 16-byte aligned)
  int64_t ldxq = 0;             // bytes
  const float* xs = nullptr;    // [K / 128, xs_ld] F32: token t's scale of channel block b at xs[b * xs_ld + t]
  int64_t xs_ld = 0;            // even, >= T rounded up to 8 (entries past T are read, never used)
  const uint8_t* w = nullptr;   // [rows, K] e4m3 contiguous, 16-byte aligned
  const float* w_scale = nullptr;  // [ceil(rows / 128), scale_ld] F32
  int64_t scale_ld = 0;
  int64_t T = 0, rows = 0, K = 0;  // K % 128 == 0
  W8A8Epilogue epilogue = W8A8Epilogue::Store;
  // Store: [T, ldy] of y_dtype (BF16 or F32); columns [0, rows) are written.
  void* y = nullptr;
  DType y_dtype = DType::BF16;
  int64_t ldy = 0;
  // SiluMulQuant: yq [pad_rows, ldyq] e4m3 (bytes; rows [T, pad_rows) written as zeros with scale
  // 1, for consumers that pad tokens to 8), ys [I / 128, ys_ld] F32, token contiguous.
  uint8_t* yq = nullptr;
  int64_t ldyq = 0;
  float* ys = nullptr;
  int64_t ys_ld = 0;
  int64_t pad_rows = 0;
  bool pdl = true;  // launched with programmatic stream serialization (overlaps the previous kernel's tail)
};

// How a product is spread: blocks of 8 warps each own 128 weight rows (SiluMulQuant: 128 gate and
// 128 up rows); `split` blocks of a thread-block cluster divide the K / 128 chunks and meet in
// distributed shared memory (no workspace, fixed summation order).
struct W8A8DecodePlan {
  int split = 1;        // 1, 2, 4 or 8
  int64_t blocks = 0;   // row tiles x split
};
// The smallest split (at most 8, at most the chunk count) that gives at least `sms` blocks, among
// those whose blocks are all resident at once (`resident`: the device's SMs times the variant's
// blocks per SM; a split whose blocks would run in a second wave leaves a tail of idle SMs). With no
// resident split: none.
W8A8DecodePlan plan_w8a8_decode(int64_t row_tiles, int64_t chunks, int sms, int64_t resident);
// Queries the current device's capacity for every kernel variant (the launcher would on its first
// call): called at load time, so that no query runs while a CUDA graph is being recorded.
cudaError_t prepare_w8a8_decode();

// Whether the kernel takes these parameters (shapes, alignment, epilogue).
bool w8a8_decode_supported(const W8A8DecodeParams& p);
// Runs the product on `stream` (no allocation, no synchronisation: capturable). Returns
// cudaErrorInvalidValue when w8a8_decode_supported is false.
cudaError_t launch_w8a8_decode(const W8A8DecodeParams& p, cudaStream_t stream);
W8A8DecodePlan w8a8_decode_plan(const W8A8DecodeParams& p);

}  // namespace dsserve::cuda
