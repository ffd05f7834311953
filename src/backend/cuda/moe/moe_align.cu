// Routing alignment of the decode path (see moe_kernels.h): one block of 1024 threads, nothing read
// back by the host (moe_align.cuh).
#include "backend/cuda/moe/moe_align.cuh"

namespace dsserve::cuda {

namespace {

__global__ void __launch_bounds__(kMoeAlignMaxExperts) moe_align_kernel(MoeAlignParams p) {
  __shared__ MoeAlignShared sh;
  moe_align_block(p, sh);
}

}  // namespace

cudaError_t launch_moe_align(const MoeAlignParams& p, cudaStream_t stream) {
  if (p.experts < 1 || p.experts > kMoeAlignMaxExperts || p.pairs < 0 || p.pairs > kMoeAlignMaxPairs ||
      p.rows_per_item < 1)
    return cudaErrorInvalidValue;
  moe_align_kernel<<<1, kMoeAlignMaxExperts, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
