// Absorbed (decode) MLA attention: the scalar reference kernel, the merge of split results shared by
// all kernels, and the dispatch between kernels (see mla_absorbed.h). Scalar kernel: one block of 8
// warps per (query token, group of 8 heads, key split); warp w owns head 8g + w. Tiles of 32 cached latent
// rows are staged in shared memory once per block and read by all 8 heads: each lane scores one
// key of the tile against its warp's head, the warp runs the online softmax in registers, then
// each lane accumulates kv_rank / 64 column pairs of the output. Scalar float32 arithmetic. An FP8
// cache is widened to BF16 as its rows are staged.
#include "backend/cuda/common/device_props.h"
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_convert.cuh"
#include "backend/cuda/mla_decode/mla_absorbed.h"

#include <algorithm>

namespace dsserve::cuda {

namespace {

constexpr int kHeadsPerBlock = 8, kThreads = 32 * kHeadsPerBlock, kBK = 32, kMaxPairsPerLane = 8;
constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ inline int k_words(int latent) { return (latent / 2) | 1; }
__host__ __device__ inline size_t smem_bytes(int latent) {
  return size_t(kHeadsPerBlock) * latent * 4 + size_t(kBK) * k_words(latent) * 4 + kBK * 8;
}

__device__ int seq_of_token(const int32_t* query_start, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads) mla_absorbed_kernel(MlaAbsorbedParams p) {
  const int t = blockIdx.x, group = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int head = group * kHeadsPerBlock + warp;
  const bool head_ok = head < p.heads;
  const int L = p.latent, L2 = L / 2, KW = k_words(L), pairs = p.kv_rank / 64;

  extern __shared__ __align__(16) unsigned char smem[];
  float* sQ = reinterpret_cast<float*>(smem);                                      // [8][L]
  uint32_t* sK = reinterpret_cast<uint32_t*>(smem + size_t(kHeadsPerBlock) * L * 4);  // [kBK][KW]
  int64_t* sSlot = reinterpret_cast<int64_t*>(sK + kBK * KW);                      // [kBK]

  const int seq = seq_of_token(p.query_start, p.num_seqs, t);
  const int qlen = p.query_start[seq + 1] - p.query_start[seq];
  const int i = t - p.query_start[seq];
  const int klen = p.seq_lens[seq], prefix = klen - qlen;
  const int mcols = p.tree_mask ? p.mask_cols[seq] : 0, masked_from = klen - mcols;
  const int32_t* mask = p.tree_mask ? p.tree_mask + p.mask_start[seq] + int64_t(i) * mcols : nullptr;
  const int nk = mask ? klen : prefix + i + 1;  // keys this query may see (the tree mask filters new ones)
  int chunk = (nk + p.num_splits - 1) / p.num_splits;
  chunk = (chunk + kBK - 1) / kBK * kBK;
  const int ks = split * chunk, ke = min(nk, ks + chunk);

  const float qscale = p.scale * kLog2e;
  const bf16* qg = static_cast<const bf16*>(p.q);
  for (int idx = tid; idx < kHeadsPerBlock * L; idx += kThreads) {
    int hh = idx / L, d = idx % L, hd = group * kHeadsPerBlock + hh;
    sQ[idx] = hd < p.heads ? to_f(qg[int64_t(t) * p.q_stride_t + int64_t(hd) * p.q_stride_h + d]) * qscale : 0.0f;
  }

  float m = -INFINITY, l = 0.0f;
  float acc[kMaxPairsPerLane][2];
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) acc[j][0] = acc[j][1] = 0.0f;

  const bf16* cache = static_cast<const bf16*>(p.cache);
  const uint8_t* cache8 = static_cast<const uint8_t*>(p.cache);  // an FP8 cache
  const bool cache_fp8 = p.cache_dtype != DType::BF16;
  const int64_t qrow = int64_t(warp) * L;
  for (int kt = ks; kt < ke; kt += kBK) {
    const int kn = min(kBK, ke - kt);
    __syncthreads();  // the previous tile (and sQ on the first pass) is complete / consumed
    if (tid < kBK) {
      int64_t slot = -1;
      if (tid < kn) {
        int key = kt + tid + p.key_shift;
        int32_t page = p.page_table[int64_t(seq) * p.max_pages + key / p.page_size];
        slot = int64_t(page) * p.page_size + key % p.page_size;
      }
      sSlot[tid] = slot;
    }
    __syncthreads();
    const int vec_per_row = L / 8;  // 16-byte vectors per latent row
    for (int idx = tid; idx < kBK * vec_per_row; idx += kThreads) {
      int r = idx / vec_per_row, c = idx % vec_per_row;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r < kn) {
        if (cache_fp8) {
          const uint2 v8 = reinterpret_cast<const uint2*>(cache8 + sSlot[r] * p.cache_stride)[c];
          v = p.cache_dtype == DType::F8_E5M2 ? fp8x8_to_bf16x8<true>(v8) : fp8x8_to_bf16x8<false>(v8);
        } else {
          v = reinterpret_cast<const uint4*>(cache + sSlot[r] * p.cache_stride)[c];
        }
      }
      uint32_t* dst = sK + r * KW + 4 * c;
      dst[0] = v.x;
      dst[1] = v.y;
      dst[2] = v.z;
      dst[3] = v.w;
    }
    __syncthreads();
    if (!head_ok) continue;

    // Score of key `lane` for this warp's head.
    float s = 0.0f;
    const uint32_t* krow = sK + lane * KW;
    const float* qh = sQ + qrow;
    for (int w = 0; w < L2; ++w) {
      uint32_t u = krow[w];
      float2 k2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
      float2 q2 = *reinterpret_cast<const float2*>(qh + 2 * w);
      s = fmaf(q2.x, k2.x, fmaf(q2.y, k2.y, s));
    }
    if (lane >= kn || (mask && kt + lane >= masked_from && !mask[kt + lane - masked_from])) s = -INFINITY;
    const float m_new = fmaxf(m, warp_max(s));  // -inf only while every key so far is masked
    const float pr = m_new == -INFINITY ? 0.0f : exp2f(s - m_new);
    const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m - m_new);  // 0 on the first live tile
    l = l * alpha + warp_sum(pr);
    m = m_new;
#pragma unroll
    for (int j = 0; j < kMaxPairsPerLane; ++j) {
      acc[j][0] *= alpha;
      acc[j][1] *= alpha;
    }
    for (int r = 0; r < kn; ++r) {
      const float pk = __shfl_sync(0xffffffffu, pr, r);
      const uint32_t* vrow = sK + r * KW;
#pragma unroll
      for (int j = 0; j < kMaxPairsPerLane; ++j) {
        if (j < pairs) {
          uint32_t u = vrow[lane + 32 * j];
          float2 v2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
          acc[j][0] = fmaf(pk, v2.x, acc[j][0]);
          acc[j][1] = fmaf(pk, v2.y, acc[j][1]);
        }
      }
    }
  }
  if (!head_ok) return;

  const int64_t th = int64_t(t) * p.heads + head;
  if (p.num_splits == 1) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    bf16* out = static_cast<bf16*>(p.out) + th * p.kv_rank;
#pragma unroll
    for (int j = 0; j < kMaxPairsPerLane; ++j)
      if (j < pairs)
        *reinterpret_cast<__nv_bfloat162*>(out + 2 * (lane + 32 * j)) =
            __floats2bfloat162_rn(acc[j][0] * inv, acc[j][1] * inv);
  } else {
    const int64_t part = int64_t(split) * p.num_tokens * p.heads + th;
    float* po = p.part_out + part * p.kv_rank;
#pragma unroll
    for (int j = 0; j < kMaxPairsPerLane; ++j)
      if (j < pairs) *reinterpret_cast<float2*>(po + 2 * (lane + 32 * j)) = make_float2(acc[j][0], acc[j][1]);
    if (lane == 0) {
      p.part_ml[part * 2] = m;  // -inf with l = 0 when the split had no keys
      p.part_ml[part * 2 + 1] = l;
    }
  }
}

// out[t, h, :] = sum_s w_s part_out[s, t, h, :] / sum_s w_s l_s with w_s = 2^(m_s - max m), over the
// splits that saw a key (m_s > -inf; the others' part_out is never read). One block per (t, h) row:
// warp 0 computes the weights of all splits into shared memory; then thread (sg, c) sums float4
// column c over splits sg, sg + SG, ... (SG = kCombineThreads / (kv_rank / 4) split groups), with
// kCombineBatch loads issued before any is used, and split groups are summed through shared memory.
// The loads of a row are thus spread over a whole block and overlap, rather than one warp walking
// the splits one dependent round trip at a time (what made the merge of 16-64 splits expensive).
// The launch bound's 4 blocks per SM give ptxas 64 registers, enough to keep a batch in flight (at
// the default target of full occupancy it takes 32 and issues fewer loads at a time).
constexpr int kCombineThreads = 256, kCombineBatch = 8;

// *ptr if pred, else zeros; one predicated load (no branch), so a batch of them is issued back to back.
__device__ __forceinline__ float4 load_f4_if(const float4* ptr, bool pred) {
  float4 v;
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %5, 0;\n"
      " mov.f32 %0, 0f00000000;\n mov.f32 %1, 0f00000000;\n mov.f32 %2, 0f00000000;\n mov.f32 %3, 0f00000000;\n"
      " @p ld.global.v4.f32 {%0, %1, %2, %3}, [%4];\n}\n"
      : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
      : "l"(ptr), "r"(int(pred)));
  return v;
}
__global__ void __launch_bounds__(kCombineThreads, 4) mla_combine_kernel(MlaAbsorbedParams p) {
  __shared__ float sW[kMaxSplits];
  __shared__ float4 sAcc[kCombineThreads];
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // the attention grid's results are complete
#endif
  const int64_t rows = int64_t(p.num_tokens) * p.heads;
  const int64_t row = blockIdx.x;
  const int tid = threadIdx.x, n = p.num_splits;
  if (tid < 32) {
    const float* ml = p.part_ml + row * 2;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // splits tid and tid + 32
    if (tid < n) m0 = ml[int64_t(tid) * rows * 2], l0 = ml[int64_t(tid) * rows * 2 + 1];
    if (tid + 32 < n) m1 = ml[int64_t(tid + 32) * rows * 2], l1 = ml[int64_t(tid + 32) * rows * 2 + 1];
    const float mx = warp_max(fmaxf(m0, m1));
    const float e0 = m0 == -INFINITY ? 0.0f : exp2f(m0 - mx), e1 = m1 == -INFINITY ? 0.0f : exp2f(m1 - mx);
    const float denom = warp_sum(e0 * l0 + e1 * l1);
    const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
    if (tid < n) sW[tid] = e0 * inv;  // 0 for a split without keys: its part_out is not read
    if (tid + 32 < n) sW[tid + 32] = e1 * inv;
  }
  __syncthreads();
  const int vecs = p.kv_rank / 4;                 // float4 columns of a row (16..128)
  const int groups = kCombineThreads / vecs;      // split groups (2 for kv_rank 512)
  const int sg = tid / vecs, c = tid % vecs;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (sg < groups) {
    const float4* src = reinterpret_cast<const float4*>(p.part_out + row * p.kv_rank) + c;
    const int64_t split_stride = rows * vecs;  // float4s between splits of one row
    for (int s0 = sg; s0 < n; s0 += groups * kCombineBatch) {
      float4 v[kCombineBatch];
      float w[kCombineBatch];
#pragma unroll
      for (int j = 0; j < kCombineBatch; ++j) {
        const int s = s0 + j * groups;
        const float ws = sW[min(s, n - 1)];  // an unconditional shared load: no branch in the batch
        w[j] = s < n ? ws : 0.0f;
        v[j] = load_f4_if(src + s * split_stride, w[j] != 0.0f);
      }
#pragma unroll
      for (int j = 0; j < kCombineBatch; ++j) {
        acc.x += w[j] * v[j].x, acc.y += w[j] * v[j].y, acc.z += w[j] * v[j].z, acc.w += w[j] * v[j].w;
      }
    }
  }
  if (groups > 1) {
    sAcc[tid] = acc;
    __syncthreads();
    if (sg != 0) return;
    for (int k = 1; k < groups; ++k) {
      const float4 o = sAcc[k * vecs + c];
      acc.x += o.x, acc.y += o.y, acc.z += o.z, acc.w += o.w;
    }
  } else if (sg != 0) {
    return;
  }
  __nv_bfloat162 lo = __floats2bfloat162_rn(acc.x, acc.y), hi = __floats2bfloat162_rn(acc.z, acc.w);
  uint2 out;
  out.x = *reinterpret_cast<uint32_t*>(&lo);
  out.y = *reinterpret_cast<uint32_t*>(&hi);
  reinterpret_cast<uint2*>(static_cast<bf16*>(p.out) + row * p.kv_rank)[c] = out;
}

}  // namespace

const char* mla_decode_kernel_name(MlaDecodeKernel k) {
  switch (k) {
    case MlaDecodeKernel::Sm90: return "wgmma";
    case MlaDecodeKernel::Mma: return "mma";
    case MlaDecodeKernel::Scalar: return "scalar";
  }
  return "?";
}

MlaDecodeKernel mla_absorbed_kernel_for(const MlaAbsorbedParams& p) {
  if (p.kernel == MlaDecodeKernel::Sm90 && !p.sm80 && mla_decode_sm90_supports(p)) return MlaDecodeKernel::Sm90;
  if (p.kernel != MlaDecodeKernel::Scalar && mla_decode_mma_supports(p)) return MlaDecodeKernel::Mma;
  return MlaDecodeKernel::Scalar;
}

int mla_absorbed_num_splits(int num_tokens, int num_seqs, int heads, int kv_rank, int max_seq_len,
                            MlaDecodeKernel kernel, int cache_bytes, bool sm80) {
  if (kernel == MlaDecodeKernel::Sm90)
    return mla_decode_sm90_num_splits(num_tokens, num_seqs, heads, kv_rank, max_seq_len);
  if (kernel == MlaDecodeKernel::Mma)
    return mla_decode_mma_num_splits(num_tokens, heads, kv_rank, max_seq_len, cache_bytes, sm80);
  const int groups = (heads + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const int blocks = std::max(1, num_tokens * groups);
  int by_len = (max_seq_len + 255) / 256;           // at least 256 keys per split
  int by_fill = (2 * 132 + blocks - 1) / blocks;    // about two waves of blocks on an H200
  return std::max(1, std::min({by_len, by_fill, 32}));
}

cudaError_t launch_mla_absorbed(const MlaAbsorbedParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0 || p.heads == 0) return cudaSuccess;
  const bool cache_ok = p.cache_dtype == DType::BF16 || p.cache_dtype == DType::F8_E4M3 ||
                        p.cache_dtype == DType::F8_E5M2;
  if (!cache_ok || p.latent % 8 || p.latent > 640 || p.kv_rank % 64 || p.kv_rank > 64 * kMaxPairsPerLane ||
      p.kv_rank >= p.latent || p.cache_stride % 8 || p.q_stride_t % 2 || p.q_stride_h % 2 || p.num_splits < 1 ||
      p.num_splits > kMaxSplits || p.kernel != mla_absorbed_kernel_for(p))
    return cudaErrorInvalidValue;
  cudaError_t e = cudaSuccess;
  if (p.kernel == MlaDecodeKernel::Sm90) {
    e = launch_mla_decode_sm90(p, stream);
  } else if (p.kernel == MlaDecodeKernel::Mma) {
    e = launch_mla_decode_mma(p, stream);
  } else {
    const size_t bytes = smem_bytes(p.latent);
    e = cudaFuncSetAttribute(mla_absorbed_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
    if (e != cudaSuccess) return e;
    dim3 grid(unsigned(p.num_tokens), unsigned(ceil_div(p.heads, kHeadsPerBlock)), unsigned(p.num_splits));
    mla_absorbed_kernel<<<grid, kThreads, bytes, stream>>>(p);
    e = cudaGetLastError();
  }
  if (e != cudaSuccess) return e;
  return p.num_splits > 1 ? launch_mla_combine(p, stream) : cudaSuccess;
}

cudaError_t launch_mla_combine(const MlaAbsorbedParams& p, cudaStream_t stream) {
  const int64_t rows = int64_t(p.num_tokens) * p.heads;
  cudaLaunchConfig_t cfg{};
  if (rows > 0x7fffffff) return cudaErrorInvalidValue;
  cfg.gridDim = dim3(unsigned(rows));  // one block per (token, head) row
  cfg.blockDim = dim3(kCombineThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = !p.sm80 && current_compute_capability() >= 90 ? 1 : 0;
  if (cudaLaunchKernelEx(&cfg, mla_combine_kernel, p) == cudaSuccess) return cudaSuccess;
  cudaGetLastError();  // a driver without programmatic launches: an ordinary launch
  cfg.numAttrs = 0;
  cudaError_t e = cudaLaunchKernelEx(&cfg, mla_combine_kernel, p);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace dsserve::cuda
