// Tensor-core expanded (prefill) MLA attention (see mla_expanded.h). One block of 4 warps per
// (64-query tile of one sequence, head); warp w owns queries 16w..16w+15. 64-key tiles of K
// (dn + dr: the head's k_nope and the shared k_pe) and V are copied to shared memory with cp.async
// and multiplied with BF16 WMMA 16x16x16, float32 accumulation. Online softmax in one pass: the
// output fragments are rescaled per query row by an elementwise product with an accumulator
// fragment loaded from a 16x16 tile of the row factors (no knowledge of the fragments' private
// element mapping needed). Each warp only touches its own rows of S and P, so only the tile loads
// need block-wide barriers; two blocks fit on an SM, so one block's loads overlap the other's math.
#include <mma.h>

#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/common/device_utils.cuh"

namespace dsserve::cuda {

namespace {

using namespace nvcuda;

constexpr int kBQ = 64, kBK = 64, kWarps = 4, kThreads = 32 * kWarps, kMaxOutFrags = 16;
constexpr float kLog2e = 1.4426950408889634f;

struct Layout {
  int ldq, ldv, ld_s, ld_p, ld_o;
  size_t q, k, v, s, p, m, l, fac, bytes;
};

__host__ __device__ inline size_t align128(size_t v) { return (v + 127) / 128 * 128; }

__host__ __device__ inline Layout layout(int dqk, int dv) {
  Layout L;
  L.ldq = dqk + 8;
  L.ldv = dv + 8;
  L.ld_s = kBK + 4;
  L.ld_p = kBK + 8;
  L.ld_o = dv + 4;
  L.q = 0;
  L.k = align128(L.q + size_t(kBQ) * L.ldq * 2);
  L.v = align128(L.k + size_t(kBK) * L.ldq * 2);
  L.s = align128(L.v + size_t(kBK) * L.ldv * 2);
  L.p = align128(L.s + size_t(kBQ) * L.ld_s * 4);
  L.m = align128(L.p + size_t(kBQ) * L.ld_p * 2);
  L.l = L.m + kBQ * 4;
  L.fac = align128(L.l + kBQ * 4);  // one 16x16 float tile per warp
  L.bytes = L.fac + size_t(kWarps) * 256 * 4;
  return L;
}

__device__ bool find_tile(const int32_t* query_start, int num_seqs, int b, int& seq, int& q0) {
  for (int s = 0; s < num_seqs; ++s) {
    int tiles = (query_start[s + 1] - query_start[s] + kBQ - 1) / kBQ;
    if (b < tiles) {
      seq = s;
      q0 = b * kBQ;
      return true;
    }
    b -= tiles;
  }
  return false;
}

__global__ void __launch_bounds__(kThreads) mla_expanded_tc_kernel(MlaExpandedParams p) {
  int seq, q0;
  if (!find_tile(p.query_start, p.num_seqs, blockIdx.x, seq, q0)) return;
  const int h = blockIdx.y;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int dqk = p.dn + p.dr, dv = p.dv;
  const Layout Y = layout(dqk, dv);
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem + Y.q);
  bf16* sK = reinterpret_cast<bf16*>(smem + Y.k);
  bf16* sV = reinterpret_cast<bf16*>(smem + Y.v);
  float* sS = reinterpret_cast<float*>(smem + Y.s);
  bf16* sP = reinterpret_cast<bf16*>(smem + Y.p);
  float* sM = reinterpret_cast<float*>(smem + Y.m);
  float* sL = reinterpret_cast<float*>(smem + Y.l);
  float* sFac = reinterpret_cast<float*>(smem + Y.fac) + warp * 256;

  const int qstart = p.query_start[seq], qlen = p.query_start[seq + 1] - qstart;
  const int klen = p.seq_lens[seq], prefix = klen - qlen, k0 = p.key_start[seq];
  const int nq = min(kBQ, qlen - q0);
  const int kend = min(klen, prefix + q0 + nq);
  const float qscale = p.scale * kLog2e;
  const bf16* qg = static_cast<const bf16*>(p.q);
  const bf16* kvg = static_cast<const bf16*>(p.kv);
  const bf16* kpeg = static_cast<const bf16*>(p.k_pe);
  const int vq = dqk / 8, vn = p.dn / 8, vv = dv / 8;

  for (int idx = tid; idx < kBQ * vq; idx += kThreads) {
    int r = idx / vq, c = idx % vq;
    const bf16* src = qg + int64_t(qstart + q0 + min(r, nq - 1)) * p.q_stride_t + int64_t(h) * p.q_stride_h + 8 * c;
    cp_async_16(sQ + r * Y.ldq + 8 * c, src, r < nq);
  }
  cp_async_commit();
  if (tid < kBQ) {
    sM[tid] = -INFINITY;
    sL[tid] = 0.0f;
  }

  const int qw = 16 * warp;  // this warp's first query row
  const bool warp_live = qw < nq;
  const int warp_last_key = prefix + q0 + min(qw + 15, nq - 1);  // the last key its queries see
  const int out_frags = dv / 16;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> o[kMaxOutFrags];
#pragma unroll
  for (int f = 0; f < kMaxOutFrags; ++f) wmma::fill_fragment(o[f], 0.0f);

  for (int kt = 0; kt < kend; kt += kBK) {
    __syncthreads();  // every warp is done with the previous tile
    for (int idx = tid; idx < kBK * vq; idx += kThreads) {
      int r = idx / vq, c = idx % vq, key = min(kt + r, kend - 1);
      int64_t row = k0 + key;
      const bf16* src = c < vn ? kvg + row * p.kv_stride_k + int64_t(h) * p.kv_stride_h + 8 * c
                               : kpeg + row * p.k_pe_stride + 8 * (c - vn);
      cp_async_16(sK + r * Y.ldq + 8 * c, src, kt + r < kend);
    }
    for (int idx = tid; idx < kBK * vv; idx += kThreads) {
      int r = idx / vv, c = idx % vv, key = min(kt + r, kend - 1);
      const bf16* src = kvg + int64_t(k0 + key) * p.kv_stride_k + int64_t(h) * p.kv_stride_h + p.dn + 8 * c;
      cp_async_16(sV + r * Y.ldv + 8 * c, src, kt + r < kend);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    if (!warp_live || kt > warp_last_key) continue;  // no query of this warp sees the tile

    {  // This warp's S rows: 16 queries x 64 keys.
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kBK / 16];
#pragma unroll
      for (int j = 0; j < kBK / 16; ++j) wmma::fill_fragment(acc[j], 0.0f);
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
      for (int kk = 0; kk < dqk / 16; ++kk) {
        wmma::load_matrix_sync(a, sQ + qw * Y.ldq + 16 * kk, Y.ldq);
#pragma unroll
        for (int j = 0; j < kBK / 16; ++j) {
          wmma::load_matrix_sync(b, sK + (16 * j) * Y.ldq + 16 * kk, Y.ldq);
          wmma::mma_sync(acc[j], a, b, acc[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < kBK / 16; ++j)
        wmma::store_matrix_sync(sS + qw * Y.ld_s + 16 * j, acc[j], Y.ld_s, wmma::mem_row_major);
      __syncwarp();
    }

    // Online softmax over this warp's 16 rows, four at a time: one row per group of 8 lanes,
    // 8 keys per lane.
    {
      const int g = lane >> 3, sub = lane & 7;
#pragma unroll
      for (int pass = 0; pass < 4; ++pass) {
        const int r = qw + 4 * pass + g;
        const int lim = min(klen - 1, prefix + q0 + r);  // last key query r sees
        float sv[kBK / 8];
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kBK / 8; ++j) {
          const int c = sub + 8 * j;
          float s = sS[r * Y.ld_s + c] * qscale;
          if (r >= nq || kt + c > lim) s = -INFINITY;
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
          sFac[(r - qw) * 16] = alpha;  // column 0 of the factor tile
        }
      }
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 8; ++j) {  // broadcast each row's factor along its row
      int idx = lane + 32 * j, rr = idx / 16, cc = idx % 16;
      if (cc) sFac[rr * 16 + cc] = sFac[rr * 16];
    }
    __syncwarp();
    {
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
        wmma::load_matrix_sync(a, sP + qw * Y.ld_p + 16 * kk, Y.ld_p);
#pragma unroll
        for (int f = 0; f < kMaxOutFrags; ++f) {
          if (f < out_frags) {
            wmma::load_matrix_sync(v, sV + (16 * kk) * Y.ldv + 16 * f, Y.ldv);
            wmma::mma_sync(o[f], a, v, o[f]);
          }
        }
      }
    }
  }

  __syncthreads();  // Q, K and V tiles are free: stage O over them
  float* sO = reinterpret_cast<float*>(smem + Y.q);
#pragma unroll
  for (int f = 0; f < kMaxOutFrags; ++f)
    if (f < out_frags) wmma::store_matrix_sync(sO + qw * Y.ld_o + 16 * f, o[f], Y.ld_o, wmma::mem_row_major);
  __syncwarp();
  bf16* out = static_cast<bf16*>(p.out);
  for (int idx = lane; idx < 16 * dv; idx += 32) {
    int r = qw + idx / dv, c = idx % dv;
    if (r >= nq) break;
    float l = sL[r];
    out[(int64_t(qstart + q0 + r) * p.heads + h) * dv + c] = __float2bfloat16_rn(l > 0.0f ? sO[r * Y.ld_o + c] / l : 0.0f);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool launch_mla_expanded_tc(const MlaExpandedParams& p, cudaStream_t stream, cudaError_t* err) {
  const int dqk = p.dn + p.dr;
  if (dqk % 16 || p.dn % 8 || p.dv % 16 || p.dv / 16 > kMaxOutFrags || p.q_stride_t % 8 || p.q_stride_h % 8 ||
      p.kv_stride_k % 8 || p.kv_stride_h % 8 || p.k_pe_stride % 8 || !aligned16(p.q) || !aligned16(p.kv) ||
      !aligned16(p.k_pe))
    return false;
  const Layout Y = layout(dqk, p.dv);
  if (size_t(kBQ) * Y.ld_o * 4 > Y.s) return false;  // staged output over Q, K and V
  if (Y.bytes > 227 * 1024) return false;
  *err = cudaFuncSetAttribute(mla_expanded_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Y.bytes));
  if (*err != cudaSuccess) return true;
  dim3 grid(unsigned(ceil_div(p.num_tokens, kBQ) + p.num_seqs), unsigned(p.heads));
  mla_expanded_tc_kernel<<<grid, kThreads, Y.bytes, stream>>>(p);
  *err = cudaGetLastError();
  return true;
}

}  // namespace dsserve::cuda
