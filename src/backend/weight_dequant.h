// Host-side dequantization of checkpoint weights to float32: plain BF16/F16/F32 conversion, and
// block-FP8 (e4m3/e5m2 values times the float32 scale of their 128x128 block).
#pragma once
#include "backend/backend.h"

namespace dsserve {

// Returns a contiguous host F32 tensor of part.weight's shape. Dequantized FP8 values are rounded
// to BF16 (the published FP8-to-BF16 conversion); other dtypes convert exactly.
Tensor dequantize_to_f32(const WeightPart& part, int block = 128);
// Any host floating tensor (strided allowed) to a contiguous host F32 copy.
Tensor host_to_f32(const Tensor& t);

}  // namespace dsserve
