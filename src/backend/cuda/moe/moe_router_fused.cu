// The decode path's fused router (see moe_kernels.h). Blocks of 32 warps; warp w computes the
// partial router logits of one (expert, 512-column slice) pair for every token: lanes read 16-byte
// vectors of the expert's float32 row (512 contiguous bytes per instruction) and the matching
// columns of each token, and a warp sum gives each token's partial. The block that finishes last
// (a ticket, after a memory fence) sums the slices in a fixed order into shared memory, routes each
// token with one warp and aligns the pairs with the whole block, then zeroes the ticket.
#include "backend/cuda/gemm/fp8_mma.cuh"
#include "backend/cuda/moe/moe_align.cuh"
#include "backend/cuda/moe/moe_route.cuh"

namespace dsserve::cuda {

namespace {

constexpr int kThreads = 1024, kWarps = kThreads / 32, kSlice = 512, kT = kMoeRouterFusedMaxTokens;

struct RouterShared {
  float logits[kT][moe_route_detail::kMaxExperts];
  float choice[kT][moe_route_detail::kMaxExperts];
  float group[kT][32];
  MoeAlignShared align;
  unsigned int last;
};

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const bf16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const bf16* b = reinterpret_cast<const bf16*>(&u);
  return make_float4(__bfloat162float(b[0]), __bfloat162float(b[1]), __bfloat162float(b[2]), __bfloat162float(b[3]));
}

template <typename TX>
__global__ void __launch_bounds__(kThreads, 1) moe_router_fused_kernel(MoeRouterFusedParams p) {
  extern __shared__ float4 smem_raw[];
  RouterShared& sh = *reinterpret_cast<RouterShared*>(smem_raw);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int T = p.route.tokens, E = p.route.experts, S = int((p.hidden + kSlice - 1) / kSlice);
  griddep_wait();  // the tokens come from the previous kernel
  griddep_launch_dependents();

  const int item = int(blockIdx.x) * kWarps + warp;
  if (item < E * S) {
    const int e = item / S, s = item % S;
    float acc[kT];
#pragma unroll
    for (int t = 0; t < kT; ++t) acc[t] = 0.0f;
    const float* wrow = p.w + int64_t(e) * p.hidden;
#pragma unroll
    for (int j = 0; j < kSlice / 128; ++j) {
      const int64_t c = int64_t(s) * kSlice + (j * 32 + lane) * 4;
      if (c < p.hidden) {
        const float4 w = load4(wrow + c);
#pragma unroll
        for (int t = 0; t < kT; ++t)
          if (t < T) {
            const float4 x = load4(static_cast<const TX*>(p.x) + int64_t(t) * p.ldx + c);
            acc[t] += w.x * x.x + w.y * x.y + w.z * x.z + w.w * x.w;
          }
      }
    }
#pragma unroll
    for (int t = 0; t < kT; ++t)
      if (t < T) {
        const float v = warp_sum(acc[t]);
        if (lane == 0) p.partial[(int64_t(s) * T + t) * E + e] = v;
      }
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) sh.last = atomicAdd(p.ticket, 1u) == gridDim.x - 1 ? 1u : 0u;
  __syncthreads();
  if (!sh.last) return;
  __threadfence();  // every block's partials are visible

  for (int i = int(threadIdx.x); i < T * E; i += kThreads) {
    const int t = i / E, e = i % E;
    float sum = 0.0f;
    for (int s = 0; s < S; ++s) sum += __ldcg(p.partial + (int64_t(s) * T + t) * E + e);
    sh.logits[t][e] = sum;
  }
  __syncthreads();
  if (warp < T) moe_route_token(p.route, warp, sh.logits[warp], sh.choice[warp], sh.group[warp]);
  __syncthreads();  // the block's route writes are visible to the block
  moe_align_block(p.align, sh.align);
  if (threadIdx.x == 0) *p.ticket = 0u;
}

}  // namespace

cudaError_t launch_moe_router_fused(const MoeRouterFusedParams& p, cudaStream_t stream) {
  const MoeRouteParams& r = p.route;
  const MoeAlignParams& a = p.align;
  if (r.tokens < 1 || r.tokens > kT || p.hidden % 4 != 0 || p.ldx % 4 != 0 || r.experts > moe_route_detail::kMaxExperts ||
      r.n_group < 1 || r.n_group > 32 || r.experts % r.n_group || r.top_k > 32 || r.top_k > r.experts ||
      r.topk_group > r.n_group || a.experts != r.experts || a.experts > kMoeAlignMaxExperts ||
      a.pairs != r.tokens * r.top_k || a.rows_per_item < 1 || a.topk_ids != r.topk_ids || !p.ticket || !p.partial ||
      reinterpret_cast<uintptr_t>(p.w) % 16 != 0 || reinterpret_cast<uintptr_t>(p.x) % 16 != 0)
    return cudaErrorInvalidValue;
  const int items = r.experts * moe_router_fused_splits(p.hidden);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned((items + kWarps - 1) / kWarps), 1, 1);
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = sizeof(RouterShared);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.pdl ? 1 : 0;
  cudaError_t e = cudaSuccess;
  DS_DISPATCH_FLOAT(p.x_dtype, TX, {
    auto kernel = moe_router_fused_kernel<TX>;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sizeof(RouterShared)));
    if (e == cudaSuccess) e = cudaLaunchKernelEx(&cfg, kernel, p);
  });
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
