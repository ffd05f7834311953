// Quantized weights (quant_gemm.h's QuantWeights: the W4A16 repacked words, or INT8 rows) expanded
// to BF16 [N, K] row-major on the device, exactly as the CPU oracle dequantizes them: (q - zero) *
// scale or q * scale in float32, rounded to nearest BF16. Prefill-size products run as this
// expansion into scratch memory followed by the BF16 product (cuBLASLt's wgmma kernels), which on
// Hopper outruns the mma.sync tiled kernel by more than the expansion costs.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/quant/quant_gemm.h"

namespace dsserve::cuda {

// out: BF16 [w.N, ldo], 16-byte aligned, ldo a multiple of 8 and >= w.K. No allocation, capturable.
cudaError_t launch_quant_dequantize(const QuantWeights& w, void* out, int64_t ldo, cudaStream_t stream);

}  // namespace dsserve::cuda
