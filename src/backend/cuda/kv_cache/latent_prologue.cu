// MLA's latent prologue (see latent_prologue.h): grid (rows, 2); blockIdx.y = 0 stores token t's
// latent (norm of c_kv, RoPE on k_pe, converted to the cache's type), blockIdx.y = 1 normalises and
// quantizes its query part (rows past the tokens: the quantized output's zero padding rows).
// Memory-bound and tiny at decode sizes: what it saves is three launches and their gaps.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_convert.cuh"
#include "backend/cuda/gemm/fp8_mma.cuh"
#include "backend/cuda/kv_cache/latent_prologue.h"

namespace dsserve::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

template <typename TI, typename TC>
__global__ void __launch_bounds__(kThreads) latent_prologue_kernel(LatentPrologueParams p) {
  extern __shared__ float row[];  // [q_part] (query role)
  // q_b's W8A8 linear (launched programmatically dependent) may start streaming its weights now; it
  // waits for this grid's completion before it reads the normed query.
  griddep_launch_dependents();
  const int64_t t = blockIdx.x;
  const TI* in = static_cast<const TI*>(p.qkv_a) + (t < p.tokens ? t : 0) * p.qkv_stride;
  if (blockIdx.y == 0) {
    if (t >= p.tokens) return;
    const int32_t slot = p.out_slots[t];
    if (slot < 0 || slot >= p.slots) return;  // validated by the host (batch builder)
    const TI* c_kv = in + p.q_part;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < p.kv_rank; c += kThreads) {
      const float v = to_f(c_kv[c]);
      ss += v * v;
    }
    ss = block_sum(ss);
    const float inv = rsqrtf(ss / float(p.kv_rank) + p.eps);
    TC* dst = static_cast<TC*>(p.cache) + int64_t(slot) * (p.kv_rank + p.rope_dim);
    for (int64_t c = threadIdx.x; c < p.kv_rank; c += kThreads)
      dst[c] = from_f<TC>(round_bf16(p.kv_norm[c] * (to_f(c_kv[c]) * inv)));
    const int32_t pos = p.positions[t];
    if (pos < 0 || pos >= p.table_positions) return;  // the model validates positions on the host
    const TI* k_pe = c_kv + p.kv_rank;
    for (int64_t i = threadIdx.x; i < p.rope_dim / 2; i += kThreads) {
      const float* cs = p.rope_table + int64_t(pos) * p.rope_dim + 2 * i;
      const float a = to_f(k_pe[2 * i]), b = to_f(k_pe[2 * i + 1]);
      dst[p.kv_rank + 2 * i] = from_f<TC>(round_bf16(a * cs[0] - b * cs[1]));
      dst[p.kv_rank + 2 * i + 1] = from_f<TC>(round_bf16(a * cs[1] + b * cs[0]));
    }
    return;
  }
  // The query part: norm, BF16 rows, then e4m3 per 128 columns.
  const bool real = t < p.tokens;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < p.q_part; c += kThreads) {
    const float v = real ? to_f(in[c]) : 0.0f;
    ss += v * v;
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / float(p.q_part) + p.eps);
  bf16* out = static_cast<bf16*>(p.q_out) + t * p.q_part;
  for (int64_t c = threadIdx.x; c < p.q_part; c += kThreads) {
    const float v = real ? round_bf16(p.q_norm[c] * (to_f(in[c]) * inv)) : 0.0f;
    row[c] = v;
    if (real) out[c] = __float2bfloat16_rn(v);
  }
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t b = warp; b < p.q_part / 128; b += kThreads / 32) {
    const float* v = row + b * 128 + lane * 4;
    const float amax = warp_max(fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3]))));
    const float s = real ? fp8_block_scale(amax) : 1.0f;
    reinterpret_cast<uint32_t*>(p.q + t * p.q_part + b * 128)[lane] = quant_e4m3x4(v[0], v[1], v[2], v[3], s);
    if (lane == 0) p.q_scale[b * p.q_rows + t] = s;
  }
}

}  // namespace

cudaError_t launch_latent_prologue(const LatentPrologueParams& p, cudaStream_t stream) {
  if (p.rope_dim % 2 != 0 || p.q_part + p.kv_rank > 8192 || (p.q_norm && (p.q_part % 128 != 0 || p.q_rows < p.tokens)))
    return cudaErrorInvalidValue;
  const int64_t rows = p.q_norm ? p.q_rows : p.tokens;
  if (rows == 0) return cudaSuccess;
  const dim3 grid(unsigned(rows), p.q_norm ? 2u : 1u);
  const size_t smem = size_t(p.q_norm ? p.q_part : 0) * sizeof(float);
  DS_DISPATCH_FLOAT(p.in_dtype, TI, DS_DISPATCH_CACHE(p.cache_dtype, TC, {
    auto kernel = latent_prologue_kernel<TI, TC>;
    if (smem > 48 * 1024) {
      const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      if (e != cudaSuccess) return e;
    }
    kernel<<<grid, kThreads, smem, stream>>>(p);
  }));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
