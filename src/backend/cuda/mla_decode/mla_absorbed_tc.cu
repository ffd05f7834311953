// Tensor-core absorbed (decode) MLA attention with WMMA (see mla_absorbed.h): the previous default,
// kept for comparison and for shapes the mma.sync kernel does not take. One block of 8 warps per
// (query token, 64 heads, key split): the 64 heads' latent queries stay in shared memory and each
// 32-key tile of the paged cache is staged once (cp.async, double-buffered: the next tile loads
// while this one is used) and read by all of them, so the cache is read once per token and head
// block. Products are BF16 WMMA 16x16x16 with float32 accumulation: S = Q K^T (warp = 16 heads x
// 16 keys), O += P V (warp = 16 heads x kv_rank / 2 columns). Online softmax in one pass: the
// per-head rescale of the output fragments multiplies them elementwise by an accumulator fragment
// loaded from a 16x16 tile whose row r holds head r's factor, which needs no knowledge of the
// fragments' private element-to-row mapping (both fragments share it).
#include <mma.h>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/mla_decode/mla_absorbed.h"

namespace dsserve::cuda {

namespace {

using namespace nvcuda;

constexpr int kHeads = 64, kBK = 32, kWarps = 8, kThreads = 32 * kWarps, kMaxOutFrags = 16;
constexpr float kLog2e = 1.4426950408889634f;

struct Layout {
  int ld, ld_s, ld_p, ld_o;  // row strides (elements) of Q/K (bf16), S (f32), P (bf16), staged O (f32)
  size_t q, k, s, p, m, l, alpha, fac, bytes;
};

__host__ __device__ inline size_t align128(size_t v) { return (v + 127) / 128 * 128; }

__host__ __device__ inline Layout layout(int latent, int kv_rank) {
  Layout L;
  L.ld = latent + 8;
  L.ld_s = kBK + 4;
  L.ld_p = kBK + 8;
  L.ld_o = kv_rank + 4;
  L.q = 0;
  L.k = align128(L.q + size_t(kHeads) * L.ld * 2);         // two key tiles
  L.s = align128(L.k + 2 * size_t(kBK) * L.ld * 2);
  L.p = align128(L.s + size_t(kHeads) * L.ld_s * 4);
  L.m = align128(L.p + size_t(kHeads) * L.ld_p * 2);
  L.l = L.m + kHeads * 4;
  L.alpha = L.l + kHeads * 4;
  L.fac = align128(L.alpha + kHeads * 4);                  // one 16x16 float tile per warp
  L.bytes = L.fac + size_t(kWarps) * 256 * 4;
  return L;
}

__device__ int seq_of(const int32_t* query_start, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads, 1) mla_absorbed_tc_kernel(MlaAbsorbedParams p) {
  const int t = blockIdx.x, h0 = blockIdx.y * kHeads, split = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wh = warp & 3, wc = warp >> 2;  // head group of 16; key half (S) / column half (O)
  const int Lw = p.latent, kr = p.kv_rank;
  const Layout Y = layout(Lw, kr);
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem + Y.q);
  bf16* sK0 = reinterpret_cast<bf16*>(smem + Y.k);
  float* sS = reinterpret_cast<float*>(smem + Y.s);
  bf16* sP = reinterpret_cast<bf16*>(smem + Y.p);
  float* sM = reinterpret_cast<float*>(smem + Y.m);
  float* sL = reinterpret_cast<float*>(smem + Y.l);
  float* sAlpha = reinterpret_cast<float*>(smem + Y.alpha);
  float* sFac = reinterpret_cast<float*>(smem + Y.fac) + warp * 256;

  const int seq = seq_of(p.query_start, p.num_seqs, t);
  const int qlen = p.query_start[seq + 1] - p.query_start[seq], i = t - p.query_start[seq];
  const int klen = p.seq_lens[seq], prefix = klen - qlen;
  const int mcols = p.tree_mask ? p.mask_cols[seq] : 0, masked_from = klen - mcols;
  const int32_t* mask = p.tree_mask ? p.tree_mask + p.mask_start[seq] + int64_t(i) * mcols : nullptr;
  const int nk = mask ? klen : prefix + i + 1;
  int chunk = (nk + p.num_splits - 1) / p.num_splits;
  chunk = (chunk + kBK - 1) / kBK * kBK;
  const int ks = split * chunk, ke = min(nk, ks + chunk);
  const int ntiles = ke > ks ? (ke - ks + kBK - 1) / kBK : 0;
  const float qscale = p.scale * kLog2e;
  const int vec = Lw / 8;  // 16-byte vectors per latent row

  // Queries of the 64 heads (zero rows past the last head).
  const bf16* qg = static_cast<const bf16*>(p.q);
  for (int idx = tid; idx < kHeads * vec; idx += kThreads) {
    int r = idx / vec, c = idx % vec, head = h0 + r;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (head < p.heads)
      v = reinterpret_cast<const uint4*>(qg + int64_t(t) * p.q_stride_t + int64_t(head) * p.q_stride_h)[c];
    *reinterpret_cast<uint4*>(sQ + r * Y.ld + 8 * c) = v;
  }
  if (tid < kHeads) {
    sM[tid] = -INFINITY;
    sL[tid] = 0.0f;
  }

  const bf16* cache = static_cast<const bf16*>(p.cache);
  // Starts the copy of tile `it` into buffer it % 2 (rows past the split's end are zero-filled).
  auto issue = [&](int it) {
    const int kt = ks + it * kBK, kn = min(kBK, ke - kt);
    bf16* dst = sK0 + (it & 1) * kBK * Y.ld;
    for (int idx = tid; idx < kBK * vec; idx += kThreads) {
      int r = idx / vec, c = idx % vec;
      const bf16* src = cache;
      if (r < kn) {
        int key = kt + r + p.key_shift;
        int64_t slot = int64_t(p.page_table[int64_t(seq) * p.max_pages + key / p.page_size]) * p.page_size +
                       key % p.page_size;
        src = cache + slot * p.cache_stride + 8 * c;
      }
      cp_async_16(dst + r * Y.ld + 8 * c, src, r < kn);
    }
    cp_async_commit();
  };

  const int out_frags = kr / 32;  // 16-column fragments per warp (half of kv_rank)
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> o[kMaxOutFrags];
#pragma unroll
  for (int f = 0; f < kMaxOutFrags; ++f) wmma::fill_fragment(o[f], 0.0f);

  if (ntiles > 0) issue(0);
  for (int it = 0; it < ntiles; ++it) {
    const int kt = ks + it * kBK, kn = min(kBK, ke - kt);
    const bf16* sK = sK0 + (it & 1) * kBK * Y.ld;
    if (it + 1 < ntiles) {
      issue(it + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile `it` (and, on the first pass, Q) is in shared memory

    {  // S[16 heads of wh][16 keys of wc] = Q K^T, four independent accumulators (latent / 16 steps)
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) wmma::fill_fragment(acc[j], 0.0f);
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
      const int steps = Lw / 16;
      for (int k4 = 0; k4 < steps; k4 += 4) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (k4 + j < steps) {
            wmma::load_matrix_sync(a, sQ + (16 * wh) * Y.ld + 16 * (k4 + j), Y.ld);
            wmma::load_matrix_sync(b, sK + (16 * wc) * Y.ld + 16 * (k4 + j), Y.ld);
            wmma::mma_sync(acc[j], a, b, acc[j]);
          }
        }
      }
#pragma unroll
      for (int e = 0; e < acc[0].num_elements; ++e) acc[0].x[e] += acc[1].x[e] + acc[2].x[e] + acc[3].x[e];
      wmma::store_matrix_sync(sS + (16 * wh) * Y.ld_s + 16 * wc, acc[0], Y.ld_s, wmma::mem_row_major);
    }
    __syncthreads();

    // Online softmax: warp w owns head rows 8w..8w+7, four at a time, one row per group of 8
    // lanes, 4 keys per lane.
    {
      const int g = lane >> 3, sub = lane & 7;
#pragma unroll
      for (int pass = 0; pass < 2; ++pass) {
        const int r = warp * (kHeads / kWarps) + 4 * pass + g;
        float sv[kBK / 8];
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kBK / 8; ++j) {
          const int key = sub + 8 * j;
          float s = sS[r * Y.ld_s + key] * qscale;
          if (key >= kn || h0 + r >= p.heads || (mask && kt + key >= masked_from && !mask[kt + key - masked_from]))
            s = -INFINITY;
          sv[j] = s;
          mx = fmaxf(mx, s);
        }
        const float m_old = sM[r], m_new = fmaxf(m_old, group8_max(mx));
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kBK / 8; ++j) {
          const float pr = m_new == -INFINITY ? 0.0f : exp2f(sv[j] - m_new);
          sum += pr;
          sP[r * Y.ld_p + sub + 8 * j] = __float2bfloat16_rn(pr);
        }
        sum = group8_sum(sum);
        const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
        if (sub == 0) {
          sM[r] = m_new;
          sL[r] = sL[r] * alpha + sum;
          sAlpha[r] = alpha;
        }
      }
    }
    __syncthreads();

    // O = diag(alpha) O + P V for this warp's 16 heads and half of the columns.
    {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        int idx = lane + 32 * j;
        sFac[idx] = sAlpha[16 * wh + idx / 16];
      }
      __syncwarp();
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> fac;
      wmma::load_matrix_sync(fac, sFac, 16, wmma::mem_row_major);
#pragma unroll
      for (int f = 0; f < kMaxOutFrags; ++f)
        if (f < out_frags)
#pragma unroll
          for (int e = 0; e < fac.num_elements; ++e) o[f].x[e] *= fac.x[e];
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> v;
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        wmma::load_matrix_sync(a, sP + (16 * wh) * Y.ld_p + 16 * kk, Y.ld_p);
#pragma unroll
        for (int f = 0; f < kMaxOutFrags; ++f) {
          if (f < out_frags) {
            wmma::load_matrix_sync(v, sK + (16 * kk) * Y.ld + (kr / 2) * wc + 16 * f, Y.ld);
            wmma::mma_sync(o[f], a, v, o[f]);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with this tile's buffer before it is refilled
  }

  // Stage O (float32) over the Q and K tiles, then write it out normalised (or raw, per split).
  __syncthreads();
  float* sO = reinterpret_cast<float*>(smem + Y.q);
#pragma unroll
  for (int f = 0; f < kMaxOutFrags; ++f)
    if (f < out_frags)
      wmma::store_matrix_sync(sO + (16 * wh) * Y.ld_o + (kr / 2) * wc + 16 * f, o[f], Y.ld_o, wmma::mem_row_major);
  __syncthreads();
  const int rows = min(kHeads, p.heads - h0);
  if (p.num_splits == 1) {
    bf16* out = static_cast<bf16*>(p.out);
    for (int idx = tid; idx < rows * kr; idx += kThreads) {
      int r = idx / kr, c = idx % kr;
      float l = sL[r];
      out[(int64_t(t) * p.heads + h0 + r) * kr + c] = __float2bfloat16_rn(l > 0.0f ? sO[r * Y.ld_o + c] / l : 0.0f);
    }
  } else {
    const int64_t base = (int64_t(split) * p.num_tokens + t) * p.heads + h0;
    for (int idx = tid; idx < rows * kr; idx += kThreads) {
      int r = idx / kr, c = idx % kr;
      p.part_out[(base + r) * kr + c] = sO[r * Y.ld_o + c];
    }
    for (int r = tid; r < rows; r += kThreads) {
      p.part_ml[(base + r) * 2] = sM[r];
      p.part_ml[(base + r) * 2 + 1] = sL[r];
    }
  }
}

}  // namespace

bool mla_absorbed_tc_supports(const MlaAbsorbedParams& p) {
  if (p.cache_dtype != DType::BF16) return false;  // FP8 caches run the mma or the scalar kernel
  if (p.latent % 16 || p.kv_rank % 32 || p.kv_rank / 32 > kMaxOutFrags || p.q_stride_t % 8 || p.q_stride_h % 8 ||
      p.cache_stride % 8)
    return false;
  const Layout Y = layout(p.latent, p.kv_rank);
  const size_t stage = size_t(kHeads) * Y.ld_o * 4;
  return stage <= Y.s && Y.bytes <= 227 * 1024;  // the staged output must fit over Q and the key tiles
}

cudaError_t launch_mla_absorbed_tc(const MlaAbsorbedParams& p, cudaStream_t stream) {
  if (!mla_absorbed_tc_supports(p)) return cudaErrorInvalidValue;
  const Layout Y = layout(p.latent, p.kv_rank);
  cudaError_t e =
      cudaFuncSetAttribute(mla_absorbed_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Y.bytes));
  if (e != cudaSuccess) return e;
  dim3 grid(unsigned(p.num_tokens), unsigned(ceil_div(p.heads, kHeads)), unsigned(p.num_splits));
  mla_absorbed_tc_kernel<<<grid, kThreads, Y.bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
