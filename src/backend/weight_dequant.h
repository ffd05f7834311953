// Host-side dequantization of checkpoint weights to float32, the CPU oracle's convention for every
// stored format: plain BF16/F16/F32 conversion; block FP8 and block INT8 (value times the float32
// scale of its 128x128 block); channel INT8 (value times its row's scale); AWQ 4-bit ((q - zero)
// times the F16 scale of its group of input channels, unpacked from AutoAWQ's nibble order).
// Quantized values are rounded to BF16 after scaling, as the published conversions to BF16 do.
// Also the AWQ nibble order itself, which the CUDA backend's repacking and `dsserve quantize` share.
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace dsserve {

// AutoAWQ "gemm" packing: nibble i (bits 4i..4i+3) of packed column c holds column 8c + kAwqOrder[i];
// column 8c + j is nibble kAwqNibble[j].
inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
inline constexpr int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};
inline int awq_nibble(const int32_t* packed_row, int64_t col) {
  return int((uint32_t(packed_row[col / 8]) >> (4 * kAwqNibble[col % 8])) & 0xF);
}

// Throws naming part.name (or the weight's shape) when the tensors of part do not fit together:
// dtypes, shapes, a missing scale or zeros, a group size that does not divide the input width.
void check_weight_part(const WeightPart& part);

// Returns a contiguous host F32 tensor [out, in] of the part's values (checked first).
// `block` is the block size of the block-scaled formats.
Tensor dequantize_to_f32(const WeightPart& part, int block = 128);
// Any host floating tensor (strided allowed) to a contiguous host F32 copy.
Tensor host_to_f32(const Tensor& t);

}  // namespace dsserve
