// AWQ weights (AutoAWQ "gemm" packing, as published) -> the W4A16 kernels' layout (quant_layout.h),
// on the device: qweight [K, N / 8] int32 becomes words [N / 16][K / 64][32][4] (a byte-for-byte
// permutation of the nibbles), qzeros [K / G, N / 8] and scales [K / G, N] F16 become one
// scale-zero word per group and row. A part of a fused weight (q_a + kv_a, gate + up) lands at
// its row offset of the whole.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda {

struct AwqRepackParams {
  const int32_t* qweight = nullptr;  // [K, N / 8] device
  const int32_t* qzeros = nullptr;   // [K / G, N / 8] device
  const uint16_t* scales = nullptr;  // [K / G, N] F16 bits, device
  int64_t N = 0, K = 0, group = 0;   // this part: N % 16 == 0, K % 64 == 0, K % group == 0
  uint32_t* w = nullptr;             // the whole weight's words; this part's tiles start at row0 / 16
  uint32_t* scale_zero = nullptr;    // the whole weight's [K / G, ld] words; this part at column row0
  int64_t ld = 0;                    // the whole weight's rows
  int64_t row0 = 0;                  // a multiple of 16
};

cudaError_t launch_awq_repack(const AwqRepackParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
