// Router kernel (see moe_kernels.h): one warp per token (moe_route.cuh). Lanes hold the token's
// expert scores (experts / 32 each), the group strengths are computed by one lane per group from
// shared memory, and each selection (groups, then experts) is a warp-wide argmax repeated k times.
#include "backend/cuda/moe/moe_route.cuh"

namespace dsserve::cuda {

namespace {

constexpr int kWarps = 4;

__global__ void __launch_bounds__(32 * kWarps) moe_route_kernel(MoeRouteParams p) {
  __shared__ float s_choice[kWarps][moe_route_detail::kMaxExperts];
  __shared__ float s_group[kWarps][32];
  const int warp = threadIdx.x >> 5;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= p.tokens) return;
  moe_route_token(p, t, p.logits + int64_t(t) * p.experts, s_choice[warp], s_group[warp]);
}

}  // namespace

cudaError_t launch_moe_route(const MoeRouteParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (p.experts > moe_route_detail::kMaxExperts || p.n_group < 1 || p.n_group > 32 || p.experts % p.n_group || p.top_k > 32 ||
      p.top_k > p.experts || p.topk_group > p.n_group)
    return cudaErrorInvalidValue;
  moe_route_kernel<<<unsigned(ceil_div(p.tokens, kWarps)), 32 * kWarps, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
