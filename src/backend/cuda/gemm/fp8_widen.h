// Block-FP8 weights widened to BF16: W[row0 + r, k] (e4m3) times its 128x128 block scale, rounded
// to BF16, exactly as the CPU oracle dequantizes. The sm80 kernel set has no FP8 tensor cores, so
// its FP8 products of prefill sizes run as BF16 cuBLASLt products on weights widened this way chunk
// by chunk of rows into scratch memory (the weights stay FP8 in memory). Memory-bound: reads one
// byte and writes two per weight.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda {

// Rows widened per chunk: the fewest whole 128-row blocks whose BF16 copy reaches kFp8WidenChunkBytes
// (at least one block), so a chunk's product is large and its scratch small.
constexpr int64_t kFp8WidenChunkBytes = int64_t(64) << 20;
int64_t fp8_widen_chunk_rows(int64_t rows, int64_t K);

struct Fp8WidenParams {
  const uint8_t* w = nullptr;       // [rows of the weight, K] e4m3, contiguous, 8-byte aligned
  const float* w_scale = nullptr;   // [ceil(rows of the weight / 128), scale_ld] F32
  int64_t scale_ld = 0;
  int64_t row0 = 0, rows = 0, K = 0;  // widen rows [row0, row0 + rows); K % 128 == 0
  void* out = nullptr;              // [rows, K] BF16, contiguous, 16-byte aligned
};
// cudaErrorInvalidValue when the parameters break the requirements above. No allocation, no
// synchronisation (capturable).
cudaError_t launch_fp8_widen(const Fp8WidenParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
