// mma.sync expanded (prefill) MLA attention (see mla_expanded.h), FlashAttention-2 style: the
// default kernel where the head dims are instantiated. One block of 4 warps per (64-query tile of
// one sequence, head); warp w owns queries 16w..16w+15 of the tile and keeps their Q fragments,
// S, P, the output accumulators and the softmax state in registers for the whole key loop.
// 64-key tiles of K (the head's k_nope from kv plus the shared k_pe: dn + dr columns) and V (dv
// columns of kv) are double-buffered in swizzled shared memory with cp.async: the copy of tile
// it + 1 runs while tile it is multiplied. Products are m16n8k16 BF16 -> float32 (S = Q K^T with K
// rows read by ldmatrix, O += P V with V read by ldmatrix.trans); the S accumulators of two
// adjacent 8-key n-tiles, rounded to BF16, are P's A fragment of one k-step, so P never leaves the
// registers. Online softmax in log2 units, row maxima and sums over the 4 lanes of a row by quad
// shuffles. Causal masking only on tiles that cross a warp's diagonal; tiles past the last key a
// warp's queries see are skipped by that warp. The grid runs heads fastest and each sequence's
// query tiles from the last (the longest key range) to the first, so the long blocks start first.
// Fragment conventions as in mla_decode/mla_decode_mma.cu.
#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/mma_sync.cuh"

namespace dsserve::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBQ = 64, kBK = 64, kWarps = 4, kThreads = 32 * kWarps;

template <int kDqk_, int kDv_>
struct Cfg {
  static constexpr int kDqk = kDqk_, kDv = kDv_;
  static constexpr int kQkChunks = kDqk / 8, kVChunks = kDv / 8;  // 16-byte chunks per row
  static constexpr int kQkRowBytes = (kQkChunks + 7) / 8 * 8 * 16;  // the swizzle permutes groups of 8
  static constexpr int kVRowBytes = (kVChunks + 7) / 8 * 8 * 16;
  static constexpr int kKSteps = kDqk / 16;    // k-steps of S
  static constexpr int kOTiles = kDv / 8;      // 8-column n-tiles of O
  static constexpr int kSTiles = kBK / 8;      // 8-key n-tiles of S
  static constexpr int kQBytes = kBQ * kQkRowBytes;
  static constexpr int kKBytes = kBK * kQkRowBytes;
  static constexpr int kVBytes = kBK * kVRowBytes;
  static constexpr int kStageBytes = kKBytes + kVBytes;
  static constexpr int kSmemBytes = kQBytes + 2 * kStageBytes;
  static_assert(kDqk % 32 == 0, "S loads B fragments for two k-steps (32 columns) at a time");
  static_assert(kDv % 16 == 0, "P V loads B fragments for two 8-column n-tiles at a time");
  static_assert(kSmemBytes <= 113 * 1024, "two blocks per SM");
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled tile: the chunk index is XORed
// with row % 8 inside its group of 8, so the 8 rows one ldmatrix phase reads fall in 8 bank groups.
template <int kRowBytes>
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return uint32_t(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
}

// Maps grid row b to (sequence, first query of its tile), each sequence's tiles from the last to
// the first; false for the spare rows of the grid.
__device__ bool find_tile(const int32_t* query_start, int num_seqs, int b, int& seq, int& q0) {
  for (int s = 0; s < num_seqs; ++s) {
    const int tiles = (query_start[s + 1] - query_start[s] + kBQ - 1) / kBQ;
    if (b < tiles) {
      seq = s;
      q0 = (tiles - 1 - b) * kBQ;
      return true;
    }
    b -= tiles;
  }
  return false;
}

// Fragment notation (PTX ISA, mma.m16n8k16): lane = 4 g + t4. A holds rows g and g + 8, columns
// 2 t4 (+1) and 2 t4 + 8 (+1); B holds k = 2 t4 (+1), 2 t4 + 8 (+1) of column g; C holds rows g and
// g + 8, columns 2 t4 (+1).
template <class C>
__global__ void __launch_bounds__(kThreads, 2) mla_expanded_mma_kernel(MlaExpandedParams p) {
  int seq, q0;
  if (!find_tile(p.query_start, p.num_seqs, int(blockIdx.y), seq, q0)) return;
  const int h = int(blockIdx.x);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3, xr = lane & 7;

  const int qstart = p.query_start[seq], qlen = p.query_start[seq + 1] - qstart;
  const int klen = p.seq_lens[seq], prefix = klen - qlen, k0 = p.key_start[seq];
  const int nq = min(kBQ, qlen - q0);
  const int kend = min(klen, prefix + q0 + nq);  // keys the tile's queries see: [0, kend)
  const int ntiles = (kend + kBK - 1) / kBK;

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sq = smem_u32(smem);
  const uint32_t stage0 = sq + C::kQBytes;

  const bf16* qg = static_cast<const bf16*>(p.q);
  const bf16* kvg = static_cast<const bf16*>(p.kv);
  const bf16* kpeg = static_cast<const bf16*>(p.k_pe);
  const int vn = p.dn / 8;  // chunks of a K row that come from kv (the rest from k_pe)

  for (int idx = tid; idx < kBQ * C::kQkChunks; idx += kThreads) {
    const int r = idx / C::kQkChunks, c = idx % C::kQkChunks;
    const bf16* src = qg + int64_t(qstart + q0 + min(r, nq - 1)) * p.q_stride_t + int64_t(h) * p.q_stride_h + 8 * c;
    cp_async_16_u32(sq + swz<C::kQkRowBytes>(r, c), src, r < nq);
  }
  cp_async_commit();

  auto issue = [&](int it) {
    const int kt = it * kBK;
    const uint32_t sk = stage0 + (it & 1) * C::kStageBytes, sv = sk + C::kKBytes;
    for (int idx = tid; idx < kBK * C::kQkChunks; idx += kThreads) {
      const int r = idx / C::kQkChunks, c = idx % C::kQkChunks;
      const int64_t row = k0 + min(kt + r, kend - 1);
      const bf16* src = c < vn ? kvg + row * p.kv_stride_k + int64_t(h) * p.kv_stride_h + 8 * c
                               : kpeg + row * p.k_pe_stride + 8 * (c - vn);
      cp_async_16_u32(sk + swz<C::kQkRowBytes>(r, c), src, kt + r < kend);
    }
    for (int idx = tid; idx < kBK * C::kVChunks; idx += kThreads) {
      const int r = idx / C::kVChunks, c = idx % C::kVChunks;
      const int64_t row = k0 + min(kt + r, kend - 1);
      const bf16* src = kvg + row * p.kv_stride_k + int64_t(h) * p.kv_stride_h + p.dn + 8 * c;
      cp_async_16_u32(sv + swz<C::kVRowBytes>(r, c), src, kt + r < kend);
    }
  };
  issue(0);
  cp_async_commit();

  // This warp's Q fragments, once.
  uint32_t qf[C::kKSteps][4];
  cp_async_wait<1>();  // the Q group
  __syncthreads();
#pragma unroll
  for (int k = 0; k < C::kKSteps; ++k)
    ldsm_x4(sq + swz<C::kQkRowBytes>(16 * warp + (lane & 15), 2 * k + (lane >> 4)), qf[k]);

  const int qw = 16 * warp;
  const int first_lim = prefix + q0 + qw;                       // last key of the warp's first query
  const int warp_last_key = prefix + q0 + min(qw + 15, nq - 1);  // last key any of its queries sees
  const bool warp_live = qw < nq;
  const int lim0 = prefix + q0 + qw + g, lim1 = lim0 + 8;       // last keys of rows g and g + 8
  const float qscale = p.scale * kLog2e;

  // Lane-constant parts of the ldmatrix addresses.
  const uint32_t k_lane = uint32_t(xr * C::kQkRowBytes);  // S: B from K rows (8 keys per n-tile)
  const int k_chunk = lane >> 3;                           // 0..3
  const uint32_t v_lane = uint32_t((xr + ((lane >> 3) & 1) * 8) * C::kVRowBytes);
  const int v_chunk = lane >> 4;

  float o[C::kOTiles][4];
#pragma unroll
  for (int j = 0; j < C::kOTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait<0>();
    __syncthreads();  // tile it is visible to all; every warp is done with tile it - 1's buffer
    if (it + 1 < ntiles) issue(it + 1);
    cp_async_commit();
    const int kt = it * kBK;
    if (!warp_live || kt > warp_last_key) continue;  // no query of this warp sees the tile
    const uint32_t sk = stage0 + (it & 1) * C::kStageBytes, sv = sk + C::kKBytes;

    // S = Q K^T: 16 queries x 64 keys.
    float s[C::kSTiles][4];
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int kp = 0; kp < C::kKSteps / 2; ++kp) {
      uint32_t b[C::kSTiles][4];  // n-tile nt: {b0, b1} of k-step 2 kp, {b0, b1} of k-step 2 kp + 1
#pragma unroll
      for (int nt = 0; nt < C::kSTiles; ++nt)
        ldsm_x4(sk + k_lane + nt * 8 * C::kQkRowBytes + (((4 * kp + k_chunk) ^ xr) << 4), b[nt]);
#pragma unroll
      for (int hk = 0; hk < 2; ++hk)
#pragma unroll
        for (int nt = 0; nt < C::kSTiles; ++nt) mma_bf16(s[nt], qf[2 * kp + hk], b[nt][2 * hk], b[nt][2 * hk + 1]);
    }

    // Scale (log2 units), causal mask where the tile crosses the warp's diagonal, row maxima.
    float mx[2] = {-INFINITY, -INFINITY};
    if (kt + kBK - 1 > first_lim) {
#pragma unroll
      for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = kt + nt * 8 + 2 * t4 + (e & 1);
          const float v = key <= ((e >> 1) ? lim1 : lim0) ? s[nt][e] * qscale : -INFINITY;
          s[nt][e] = v;
          mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
    } else {
#pragma unroll
      for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float v = s[nt][e] * qscale;
          s[nt][e] = v;
          mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
    }
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m = fmaxf(m_run[r], mx[r]);
      m_use[r] = m == -INFINITY ? 0.0f : m;        // every key so far masked: P = 0, nothing to rescale
      alpha[r] = exp2f(m_run[r] - m_use[r]);       // 0 on the first tile with a visible key
      m_run[r] = m;
    }

    // P (BF16 A fragments of the 4 k-steps of P V) and per-lane partial row sums.
    uint32_t pa[kBK / 16][4];
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt) {
      const float p0 = exp2f(s[nt][0] - m_use[0]), p1 = exp2f(s[nt][1] - m_use[0]);
      const float p2 = exp2f(s[nt][2] - m_use[1]), p3 = exp2f(s[nt][3] - m_use[1]);
      rs0 += p0 + p1;
      rs1 += p2 + p3;
      pa[nt / 2][(nt & 1) * 2] = pack_bf16(p0, p1);      // row g
      pa[nt / 2][(nt & 1) * 2 + 1] = pack_bf16(p2, p3);  // row g + 8
    }
    l_run[0] = l_run[0] * alpha[0] + rs0;
    l_run[1] = l_run[1] * alpha[1] + rs1;
#pragma unroll
    for (int j = 0; j < C::kOTiles; ++j) {
      o[j][0] *= alpha[0];
      o[j][1] *= alpha[0];
      o[j][2] *= alpha[1];
      o[j][3] *= alpha[1];
    }

    // O += P V over the tile's 64 keys.
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < C::kOTiles / 2; ++np) {
        uint32_t b[4];  // {b0, b1} of column n-tiles 2 np and 2 np + 1
        ldsm_x4_trans(sv + v_lane + kk * 16 * C::kVRowBytes + (((v_chunk + 2 * np) ^ xr) << 4), b);
        mma_bf16(o[2 * np], pa[kk], b[0], b[1]);
        mma_bf16(o[2 * np + 1], pa[kk], b[2], b[3]);
      }
    }
  }
  cp_async_wait<0>();

  if (!warp_live) return;
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.0f ? 1.0f / l : 0.0f;
  }
  bf16* out = static_cast<bf16*>(p.out);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = qw + g + 8 * r;
    if (row >= nq) continue;
    bf16* dst = out + (int64_t(qstart + q0 + row) * p.heads + h) * C::kDv + 2 * t4;
#pragma unroll
    for (int j = 0; j < C::kOTiles; ++j)
      *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) =
          __floats2bfloat162_rn(o[j][2 * r] * inv[r], o[j][2 * r + 1] * inv[r]);
  }
}

template <class C>
cudaError_t launch_cfg(const MlaExpandedParams& p, cudaStream_t stream) {
  auto kernel = mla_expanded_mma_kernel<C>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  // All of the unified L1 / shared memory as shared memory, so that two blocks fit on an SM.
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared));
  if (e != cudaSuccess) return e;
  const int64_t rows = ceil_div(p.num_tokens, kBQ) + p.num_seqs;  // query tiles (upper bound)
  if (rows > 65535) return cudaErrorInvalidValue;
  dim3 grid(unsigned(p.heads), unsigned(rows));
  kernel<<<grid, kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool mla_expanded_mma_supports(const MlaExpandedParams& p) {
  const bool shape = (p.dn + p.dr == 192 && p.dv == 128) || (p.dn + p.dr == 96 && p.dv == 64);
  return shape && p.dn % 8 == 0 && p.q_stride_t % 8 == 0 && p.q_stride_h % 8 == 0 && p.kv_stride_k % 8 == 0 &&
         p.kv_stride_h % 8 == 0 && p.k_pe_stride % 8 == 0 && aligned16(p.q) && aligned16(p.kv) && aligned16(p.k_pe) &&
         ceil_div(p.num_tokens, kBQ) + p.num_seqs <= 65535;
}

cudaError_t launch_mla_expanded_mma(const MlaExpandedParams& p, cudaStream_t stream) {
  if (!mla_expanded_mma_supports(p)) return cudaErrorInvalidValue;
  if (p.dv == 128) return launch_cfg<Cfg<192, 128>>(p, stream);
  return launch_cfg<Cfg<96, 64>>(p, stream);
}

}  // namespace dsserve::cuda
