// Host side of TMA: tensor maps for row-strided BF16 / FP8 / float tensors with the 128-byte
// swizzle, encoded through the driver's cuTensorMapEncodeTiled (found at run time, so nothing links
// libcuda directly).
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace dsserve::cuda::sm90 {

// A tensor of `rank` (2..5) dimensions, innermost first: dims[i] elements, strides_bytes[i] the
// byte distance between consecutive indices of dimension i + 1 (multiples of 16), box[i] the
// copied box (box[0] * element bytes <= 128 with the swizzle). Out-of-range elements read as zero.
struct TensorMapSpec {
  const void* base;
  CUtensorMapDataType dtype;
  int rank;
  uint64_t dims[5];
  uint64_t strides_bytes[4];
  uint32_t box[5];
  CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_128B;
  CUtensorMapL2promotion l2_promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B;
};

// cudaSuccess, or cudaErrorInvalidValue when the driver rejects the spec (alignment, box sizes).
cudaError_t make_tensor_map(const TensorMapSpec& spec, CUtensorMap* out);

}  // namespace dsserve::cuda::sm90
