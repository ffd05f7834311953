// Expanded (prefill) MLA attention kernel (see mla_expanded.h): flash-attention style with an
// online float32 softmax. One block of 128 threads per (16-query tile of one sequence, head);
// 64-key tiles of K (dn + dr) and V (dv) are staged in shared memory as bf16 and shared by the
// tile's queries. Scalar FMAs: simple and exact enough; tensor-core tiles are the next step.
#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/common/device_utils.cuh"

namespace dsserve::cuda {

namespace {

constexpr int kBQ = 16, kBK = 64, kThreads = 128;
constexpr int kQPerThread = kBQ / 2;  // queries per thread (two query halves of 64 threads)
constexpr float kLog2e = 1.4426950408889634f;

struct Smem {
  int k_words;  // row stride of the K tile in 32-bit words (odd: conflict-free column reads)
  int v_words;
  size_t q_off, k_off, v_off, s_off, bytes;
};

__host__ __device__ inline Smem smem_layout(int dqk, int dv) {
  Smem s;
  s.k_words = (dqk / 2) | 1;
  s.v_words = dv / 2;
  s.q_off = 0;
  s.k_off = s.q_off + size_t(kBQ) * dqk * 4;
  s.v_off = s.k_off + size_t(kBK) * s.k_words * 4;
  s.s_off = s.v_off + size_t(kBK) * s.v_words * 4;
  s.bytes = s.s_off + size_t(kBQ) * kBK * 4 + 3 * kBQ * 4;
  return s;
}

// Maps a block to (sequence, first query of its tile); false for the spare blocks of the grid.
__device__ bool find_tile(const int32_t* query_start, int num_seqs, int b, int& seq, int& q0) {
  for (int s = 0; s < num_seqs; ++s) {
    int qlen = query_start[s + 1] - query_start[s];
    int tiles = (qlen + kBQ - 1) / kBQ;
    if (b < tiles) {
      seq = s;
      q0 = b * kBQ;
      return true;
    }
    b -= tiles;
  }
  return false;
}

__global__ void __launch_bounds__(kThreads) mla_expanded_kernel(MlaExpandedParams p) {
  int seq, q0;
  if (!find_tile(p.query_start, p.num_seqs, blockIdx.x, seq, q0)) return;
  const int h = blockIdx.y;
  const int dqk = p.dn + p.dr;
  const Smem L = smem_layout(dqk, p.dv);
  extern __shared__ __align__(16) unsigned char smem[];
  float* sQ = reinterpret_cast<float*>(smem + L.q_off);               // [kBQ][dqk], pre-scaled
  uint32_t* sK = reinterpret_cast<uint32_t*>(smem + L.k_off);         // [kBK][k_words] bf16 pairs
  uint32_t* sV = reinterpret_cast<uint32_t*>(smem + L.v_off);         // [kBK][v_words] bf16 pairs
  float* sS = reinterpret_cast<float*>(smem + L.s_off);               // [kBQ][kBK]
  float* sM = sS + kBQ * kBK;                                         // [kBQ] running max (log2 units)
  float* sL = sM + kBQ;                                               // [kBQ] running sum
  float* sAlpha = sL + kBQ;                                           // [kBQ] rescale of this tile

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int qstart = p.query_start[seq], qlen = p.query_start[seq + 1] - qstart;
  const int klen = p.seq_lens[seq], prefix = klen - qlen, k0 = p.key_start[seq];
  const int nq = min(kBQ, qlen - q0);
  const float qscale = p.scale * kLog2e;
  const bf16* qg = static_cast<const bf16*>(p.q);
  const bf16* kvg = static_cast<const bf16*>(p.kv);
  const bf16* kpeg = static_cast<const bf16*>(p.k_pe);

  for (int i = tid; i < kBQ * dqk; i += kThreads) {
    int qi = i / dqk, d = i % dqk;
    float v = 0.0f;
    if (qi < nq) v = to_f(qg[int64_t(qstart + q0 + qi) * p.q_stride_t + int64_t(h) * p.q_stride_h + d]) * qscale;
    sQ[i] = v;
  }
  if (tid < kBQ) {
    sM[tid] = -INFINITY;
    sL[tid] = 0.0f;
  }

  const int half = tid >> 6;        // which query half this thread serves
  const int kk = tid & 63;          // key column for the score phase
  const int cp = tid & 63;          // value column pair for the output phase
  const bool has_cols = cp < p.dv / 2;
  float acc[kQPerThread][2];
#pragma unroll
  for (int j = 0; j < kQPerThread; ++j) acc[j][0] = acc[j][1] = 0.0f;

  const int kend = min(klen, prefix + q0 + nq);  // keys any query of the tile can see
  const int dn2 = p.dn / 2, dqk2 = dqk / 2, dv2 = p.dv / 2;
  for (int kt = 0; kt < kend; kt += kBK) {
    __syncthreads();  // previous tile fully consumed
    for (int i = tid; i < kBK * dqk2; i += kThreads) {
      int r = i / dqk2, w = i % dqk2, key = kt + r;
      uint32_t v = 0;
      if (key < kend) {
        const int64_t row = k0 + key;
        v = w < dn2 ? reinterpret_cast<const uint32_t*>(kvg + row * p.kv_stride_k + int64_t(h) * p.kv_stride_h)[w]
                    : reinterpret_cast<const uint32_t*>(kpeg + row * p.k_pe_stride)[w - dn2];
      }
      sK[r * L.k_words + w] = v;
    }
    for (int i = tid; i < kBK * dv2; i += kThreads) {
      int r = i / dv2, w = i % dv2, key = kt + r;
      uint32_t v = 0;
      if (key < kend)
        v = reinterpret_cast<const uint32_t*>(kvg + int64_t(k0 + key) * p.kv_stride_k + int64_t(h) * p.kv_stride_h +
                                              p.dn)[w];
      sV[r * L.v_words + w] = v;
    }
    __syncthreads();

    // Scores: thread (half, kk) computes queries half + 2j against key kk.
    {
      float s[kQPerThread];
#pragma unroll
      for (int j = 0; j < kQPerThread; ++j) s[j] = 0.0f;
      const uint32_t* krow = sK + kk * L.k_words;
      for (int w = 0; w < dqk2; ++w) {
        uint32_t u = krow[w];
        float2 k2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
#pragma unroll
        for (int j = 0; j < kQPerThread; ++j) {
          const float2 q2 = *reinterpret_cast<const float2*>(sQ + (half + 2 * j) * dqk + 2 * w);
          s[j] = fmaf(q2.x, k2.x, fmaf(q2.y, k2.y, s[j]));
        }
      }
      const int key = kt + kk;
#pragma unroll
      for (int j = 0; j < kQPerThread; ++j) {
        int qi = half + 2 * j;
        bool visible = qi < nq && key < klen && key <= prefix + q0 + qi;
        sS[qi * kBK + kk] = visible ? s[j] : -INFINITY;
      }
    }
    __syncthreads();

    // Online softmax: warp w handles rows w, w + 4, w + 8, w + 12.
    for (int qi = warp; qi < kBQ; qi += kThreads / 32) {
      float a = sS[qi * kBK + lane], b = sS[qi * kBK + lane + 32];
      float m_old = sM[qi];
      float m_new = fmaxf(m_old, warp_max(fmaxf(a, b)));
      float pa = m_new == -INFINITY ? 0.0f : exp2f(a - m_new);
      float pb = m_new == -INFINITY ? 0.0f : exp2f(b - m_new);
      float alpha = m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
      float sum = warp_sum(pa + pb);
      sS[qi * kBK + lane] = pa;
      sS[qi * kBK + lane + 32] = pb;
      __syncwarp();
      if (lane == 0) {
        sM[qi] = m_new;
        sL[qi] = sL[qi] * alpha + sum;
        sAlpha[qi] = alpha;
      }
    }
    __syncthreads();

    // Output: thread (half, cp) accumulates columns 2cp, 2cp+1 of queries half + 2j.
    if (has_cols) {
#pragma unroll
      for (int j = 0; j < kQPerThread; ++j) {
        float al = sAlpha[half + 2 * j];
        acc[j][0] *= al;
        acc[j][1] *= al;
      }
      const int kn = min(kBK, kend - kt);
      for (int r = 0; r < kn; ++r) {
        uint32_t u = sV[r * L.v_words + cp];
        float2 v2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
#pragma unroll
        for (int j = 0; j < kQPerThread; ++j) {
          float pr = sS[(half + 2 * j) * kBK + r];
          acc[j][0] = fmaf(pr, v2.x, acc[j][0]);
          acc[j][1] = fmaf(pr, v2.y, acc[j][1]);
        }
      }
    }
  }
  __syncthreads();
  if (!has_cols) return;
  bf16* out = static_cast<bf16*>(p.out);
#pragma unroll
  for (int j = 0; j < kQPerThread; ++j) {
    int qi = half + 2 * j;
    if (qi >= nq) continue;
    float l = sL[qi];
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __nv_bfloat162 o = __floats2bfloat162_rn(acc[j][0] * inv, acc[j][1] * inv);
    int64_t t = qstart + q0 + qi;
    *reinterpret_cast<__nv_bfloat162*>(out + (t * p.heads + h) * p.dv + 2 * cp) = o;
  }
}

}  // namespace

const char* mla_prefill_kernel_name(MlaPrefillKernel k) {
  switch (k) {
    case MlaPrefillKernel::Sm90: return "wgmma";
    case MlaPrefillKernel::Mma: return "mma";
    case MlaPrefillKernel::Scalar: return "scalar";
  }
  return "?";
}

cudaError_t launch_mla_expanded(const MlaExpandedParams& p, cudaStream_t stream, MlaPrefillKernel* ran) {
  if (p.num_tokens == 0 || p.heads == 0) return cudaSuccess;
  if (p.kernel == MlaPrefillKernel::Sm90 && mla_prefill_sm90_supports(p)) {
    if (ran) *ran = MlaPrefillKernel::Sm90;
    return launch_mla_prefill_sm90(p, stream);
  }
  if (p.kernel != MlaPrefillKernel::Scalar && mla_expanded_mma_supports(p)) {
    if (ran) *ran = MlaPrefillKernel::Mma;
    return launch_mla_expanded_mma(p, stream);
  }
  if (ran) *ran = MlaPrefillKernel::Scalar;
  const int dqk = p.dn + p.dr;
  if (p.dn % 2 || p.dr % 2 || p.dv % 2 || p.dv > 2 * 64 || dqk > 256 || p.q_stride_t % 2 || p.q_stride_h % 2 ||
      p.kv_stride_k % 2 || p.kv_stride_h % 2 || p.k_pe_stride % 2)
    return cudaErrorInvalidValue;
  const Smem L = smem_layout(dqk, p.dv);
  cudaError_t e = cudaFuncSetAttribute(mla_expanded_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(L.bytes));
  if (e != cudaSuccess) return e;
  dim3 grid(unsigned(ceil_div(p.num_tokens, kBQ) + p.num_seqs), unsigned(p.heads));
  mla_expanded_kernel<<<grid, kThreads, L.bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
