// Absorbed MLA decode / verify on Hopper (sm_90a): wgmma from shared memory, the paged latent cache
// brought in by TMA in 64 x 64 chunks completing on transaction barriers, and two warpgroups that
// share one 64 x 512 output in a seesaw schedule (README.md). BF16 or FP8 cache (an FP8 chunk lands
// in the upper half of its BF16 slot and is widened in place before the products read it), latent
// 576 / kv_rank 512, pages of a multiple of 64 tokens; other calls go to the mma.sync kernel.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cuda/common/fp8_convert.cuh"
#include "backend/cuda/common/device_props.h"
#include "backend/cuda/common/sm90/quad_reduce.cuh"
#include "backend/cuda/common/sm90/tensor_map.h"
#include "backend/cuda/common/sm90/tma_pipeline.cuh"
#include "backend/cuda/common/sm90/wgmma.cuh"
#include "backend/cuda/common/sm90/wgmma_sync.cuh"
#include "backend/cuda/mla_decode/mla_absorbed.h"

namespace dsserve::cuda {
namespace {

using namespace sm90;

constexpr int kLatent = 576, kRank = 512;
constexpr int kTile = 64;         // keys per tile (one page of 64, or a 64-aligned part of a larger page)
constexpr int kChunk = 64;        // latent columns per TMA copy: 128 bytes, one swizzle row
constexpr int kChunks = kLatent / kChunk;  // 9: 8 of c_kv (also the values), 1 of k_pe
constexpr int kRows = 64;         // query rows (token, head) per block: the wgmma M
constexpr int kThreads = 256;     // two warpgroups
constexpr int kChunkBytes = kTile * kChunk * 2;  // 8 KiB, [64 rows][128 bytes] swizzled
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kMinit = -1e30f;  // running max before any key (finite: exp2 of differences stays defined)

// Shared memory (offsets from a 1024-byte aligned base).
constexpr int kQOff = 0;                                  // Q chunks 0..7 (chunk 8 lives in registers)
constexpr int kKOff = kQOff + 8 * kChunkBytes;             // two tile buffers x 9 chunks
constexpr int kP0Off = kKOff + 2 * kChunks * kChunkBytes;  // P of tile 0 of a pair, [64][64] bf16
constexpr int kP1Off = kP0Off + kChunkBytes;               // P of tile 1
constexpr int kBarOff = kP1Off + kChunkBytes;              // full barriers [2][9]
constexpr int kM0Off = kBarOff + 2 * kChunks * 8;          // [64] float: max after tile 0
constexpr int kS0Off = kM0Off + kRows * 4;                 // [64] scale of tile 0
constexpr int kM1Off = kS0Off + kRows * 4;                 // [64] max after tile 1
constexpr int kS1Off = kM1Off + kRows * 4;                 // [64] scale of tile 1
constexpr int kLOff = kS1Off + kRows * 4;                  // [64] the first warpgroup's row sums
constexpr int kSmemBytes = kLOff + kRows * 4 + 1024;       // + alignment slack
static_assert(kSmemBytes <= 232448, "the block's shared memory exceeds the sm_90 limit");

// Named barriers between the warpgroups (256 threads).
constexpr int kBarScale0 = 1;  // warpgroup 0 wrote m0 / scale0
constexpr int kBarScale1 = 2;  // warpgroup 1 wrote m1 / scale1 and P1
constexpr int kBarP0 = 3;      // warpgroup 0 wrote P0 (rescaled to m1)
constexpr int kBarWiden = 4;   // + warpgroup: FP8 chunk widening within one warpgroup (128 threads)

// Element type of the cache an instantiation reads.
enum class CacheFormat { Bf16, E4m3, E5m2 };
template <CacheFormat F>
constexpr bool kIsFp8 = F != CacheFormat::Bf16;
// Bytes a chunk copy delivers, and where in its 8 KiB slot it lands.
template <CacheFormat F>
constexpr int kCopyBytes = kIsFp8<F> ? kChunkBytes / 2 : kChunkBytes;
template <CacheFormat F>
constexpr int kCopyOffset = kIsFp8<F> ? kChunkBytes / 2 : 0;

__device__ __forceinline__ void launch_dependents() { asm volatile("griddepcontrol.launch_dependents;\n" ::); }


// Byte offset of (row, 16-byte piece) in a [rows][128 bytes] 128B-swizzled tile.
__device__ __forceinline__ uint32_t sw128(int row, int piece) { return uint32_t(row * 128 + ((piece ^ (row & 7)) << 4)); }

struct Block {
  int seq, split, qbase, qlen, klen, ks, ntiles, mask_cols, masked_from;
  const int32_t* mask;  // the sequence's tree mask rows (qlen x mask_cols) or null
  int64_t row0;         // first cache slot of tile 0
};

// The slot of key `key` of sequence `seq` (keys of a tile are consecutive slots: checked by supports()).
__device__ __forceinline__ int64_t slot_of(const MlaAbsorbedParams& p, int seq, int key) {
  const int pos = key + p.key_shift;
  return int64_t(p.page_table[int64_t(seq) * p.max_pages + pos / p.page_size]) * p.page_size + pos % p.page_size;
}

// Issues the TMA copies of chunks [c0, c1) of tile `k` into buffer `buf` (one thread), with the L2
// cache policy `policy`.
template <CacheFormat F>
__device__ __forceinline__ void load_chunks(const MlaAbsorbedParams& p, const CUtensorMap* map, const Block& b,
                                            char* smem, uint64_t* bars, int k, int buf, int c0, int c1,
                                            uint64_t policy) {
  const int64_t row = slot_of(p, b.seq, b.ks + k * kTile);
  for (int c = c0; c < c1; ++c) {
    uint64_t* bar = bars + buf * kChunks + c;
    mbar_arrive_expect_tx(bar, kCopyBytes<F>);
    char* dst = smem + kKOff + (buf * kChunks + c) * kChunkBytes + kCopyOffset<F>;
    tma_load_2d_hint(dst, map, c * kChunk, int(row), bar, policy);
  }
}

// Scores of a tile for this warpgroup: S[64 x 64] = Q K^T over the 9 chunks, waiting for each chunk.
// Chunks are taken in the order their buffers are refilled (the refills follow the releases): the
// rope chunk first, then for buffer 0 the values' left half before the right, for buffer 1 the right
// half before the left.
// FP8: widens chunk `kc` in place, from its upper 4 KiB ([64 rows][64 bytes], as copied) to the
// swizzled BF16 layout over all 8 KiB; the warpgroup's 128 threads each take half a row.
template <CacheFormat F>
__device__ __forceinline__ void widen_chunk(char* kc, int wg, int wt) {
  constexpr bool kE5m2 = F == CacheFormat::E5m2;
  const int row = wt >> 1, half = wt & 1;
  const uint4* src = reinterpret_cast<const uint4*>(kc + kChunkBytes / 2) + row * 4 + 2 * half;
  const uint4 a = src[0], b = src[1];
  named_bar_sync(kBarWiden + wg, 128);  // every FP8 byte is in registers before any is overwritten
  *reinterpret_cast<uint4*>(kc + sw128(row, 4 * half + 0)) = fp8x8_to_bf16x8<kE5m2>(make_uint2(a.x, a.y));
  *reinterpret_cast<uint4*>(kc + sw128(row, 4 * half + 1)) = fp8x8_to_bf16x8<kE5m2>(make_uint2(a.z, a.w));
  *reinterpret_cast<uint4*>(kc + sw128(row, 4 * half + 2)) = fp8x8_to_bf16x8<kE5m2>(make_uint2(b.x, b.y));
  *reinterpret_cast<uint4*>(kc + sw128(row, 4 * half + 3)) = fp8x8_to_bf16x8<kE5m2>(make_uint2(b.z, b.w));
  fence_proxy_async();
  named_bar_sync(kBarWiden + wg, 128);  // the whole BF16 chunk is written before wgmma reads it
}

// The first step (the rope chunk) starts the accumulation from zero.
template <int kBuf, CacheFormat F>
__device__ __forceinline__ void qk_tile(float (&s)[32], char* smem, uint64_t* bars, uint32_t parity,
                                        const uint32_t (&q8)[4][4], int wg, int wt) {
  constexpr int kOrder[2][kChunks] = {{8, 0, 1, 2, 3, 4, 5, 6, 7}, {8, 4, 5, 6, 7, 0, 1, 2, 3}};
  fence_regs(s);
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = kOrder[kBuf][i];
    mbar_wait(bars + kBuf * kChunks + c, parity);
    char* kc = smem + kKOff + (kBuf * kChunks + c) * kChunkBytes;
    if constexpr (kIsFp8<F>) widen_chunk<F>(kc, wg, wt);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      const uint64_t db = sw128_desc(kc + 32 * ks, 0, 1024);
      if (c < 8) {
        const uint64_t da = sw128_desc(smem + kQOff + c * kChunkBytes + 32 * ks, 0, 1024);
        wgmma_m64n64k16_ss<0, 0>(s, da, db, 1);
      } else {
        wgmma_m64n64k16_rs<0>(s, q8[ks], db, i + ks > 0);
      }
    }
    wgmma_commit();
  }
}

// O half (+)= P V half: P from registers (A fragments), V = chunks [4 h, 4 h + 4) of buffer `buf`.
__device__ __forceinline__ void pv_regs(float (&o)[128], const uint32_t (&pa)[4][4], const char* smem, int buf, int h) {
  const char* v = smem + kKOff + (buf * kChunks + 4 * h) * kChunkBytes;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma_m64n256k16_rs<1>(o, pa[kk], sw128_desc(v + 2048 * kk, kChunkBytes, 1024), 1);
}
// O half += P V half with P from shared memory.
__device__ __forceinline__ void pv_smem(float (&o)[128], const char* sp, const char* smem, int buf, int h) {
  const char* v = smem + kKOff + (buf * kChunks + 4 * h) * kChunkBytes;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    wgmma_m64n256k16_ss<0, 1>(o, sw128_desc(sp + 32 * kk, 0, 1024), sw128_desc(v + 2048 * kk, kChunkBytes, 1024), 1);
}

// Masks S (raw products) for keys past the end or hidden from a row, and scales to log2 units.
// Rows of this thread: r0 = 16 w + g and r0 + 8; columns 8 j + 2 t + {0, 1}.
__device__ __forceinline__ void scale_and_mask(float (&s)[32], const Block& b, int key0, bool need_mask,
                                               const int (&row_tok)[2], float qscale, int t) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float v = s[4 * j + e] * qscale;
      if (need_mask) {
        const int key = key0 + 8 * j + 2 * t + (e & 1), i = row_tok[e >> 1];
        bool ok = key < b.klen;
        if (b.mask) {
          if (ok && key >= b.masked_from) ok = b.mask[int64_t(i) * b.mask_cols + (key - b.masked_from)] != 0;
        } else {
          ok = ok && key <= b.klen - b.qlen + i;
        }
        v = ok ? v : -INFINITY;
      }
      s[4 * j + e] = v;
    }
}

__device__ __forceinline__ void row_max(const float (&s)[32], float (&mx)[2]) {
  mx[0] = mx[1] = -INFINITY;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    mx[0] = fmaxf(mx[0], fmaxf(s[4 * j], s[4 * j + 1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[4 * j + 2], s[4 * j + 3]));
  }
  mx[0] = quad_max(mx[0]);
  mx[1] = quad_max(mx[1]);
}

// P = exp2(S - m) in place; returns this thread's part of each row's sum.
__device__ __forceinline__ void exp_rows(float (&s)[32], const float (&m)[2], float (&sum)[2]) {
  sum[0] = sum[1] = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float v = exp2f(s[4 * j + e] - m[e >> 1]);
      s[4 * j + e] = v;
      sum[e >> 1] += v;
    }
}

// P (float, S layout) as the PV product's A fragments, times `mul` per row.
__device__ __forceinline__ void to_a_frags(const float (&s)[32], const float (&mul)[2], uint32_t (&pa)[4][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    pa[kk][0] = pack_bf16x2(s[8 * kk + 0] * mul[0], s[8 * kk + 1] * mul[0]);
    pa[kk][1] = pack_bf16x2(s[8 * kk + 2] * mul[1], s[8 * kk + 3] * mul[1]);
    pa[kk][2] = pack_bf16x2(s[8 * kk + 4] * mul[0], s[8 * kk + 5] * mul[0]);
    pa[kk][3] = pack_bf16x2(s[8 * kk + 6] * mul[1], s[8 * kk + 7] * mul[1]);
  }
}

// P (float, S layout) times `mul` per row into a [64][64] bf16 swizzled tile (the A operand of pv_smem).
__device__ __forceinline__ void store_p(char* sp, const float (&s)[32], const float (&mul)[2], int w, int g, int t) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 16 * w + g + 8 * h;
      *reinterpret_cast<uint32_t*>(sp + sw128(row, j) + 4 * t) =
          pack_bf16x2(s[4 * j + 2 * h] * mul[h], s[4 * j + 2 * h + 1] * mul[h]);
    }
}

__device__ __forceinline__ void scale_o(float (&o)[128], const float (&f)[2]) {
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    o[4 * j] *= f[0], o[4 * j + 1] *= f[0];
    o[4 * j + 2] *= f[1], o[4 * j + 3] *= f[1];
  }
}

template <CacheFormat F>
__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_sm90_kernel(const MlaAbsorbedParams p, const __grid_constant__ CUtensorMap cache_map) {
  extern __shared__ char smem_raw[];
  char* smem = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + kBarOff);
  float* sM0 = reinterpret_cast<float*>(smem + kM0Off);
  float* sS0 = reinterpret_cast<float*>(smem + kS0Off);
  float* sM1 = reinterpret_cast<float*>(smem + kM1Off);
  float* sS1 = reinterpret_cast<float*>(smem + kS1Off);
  float* sL = reinterpret_cast<float*>(smem + kLOff);
  launch_dependents();

  // The warpgroup index through a shuffle, so the compiler sees it uniform across the warpgroup.
  const int tid = threadIdx.x, wg = __shfl_sync(0xffffffffu, tid >> 7, 0), wt = tid & 127, w = wt >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;

  // This block: rows [64 mb, 64 mb + 64) of its sequence's (token, head) rows, keys of one split.
  Block b;
  b.seq = blockIdx.z;
  b.split = blockIdx.y;
  const int mb = blockIdx.x;
  b.qbase = p.query_start[b.seq];
  b.qlen = p.query_start[b.seq + 1] - b.qbase;
  const int nrows = b.qlen * p.heads;
  if (mb * kRows >= nrows) return;
  b.klen = p.seq_lens[b.seq];
  b.mask_cols = p.tree_mask ? p.mask_cols[b.seq] : 0;
  b.masked_from = b.klen - b.mask_cols;
  b.mask = p.tree_mask ? p.tree_mask + p.mask_start[b.seq] : nullptr;
  {
    int chunk = (b.klen + p.num_splits - 1) / p.num_splits;
    chunk = (chunk + kTile - 1) / kTile * kTile;
    b.ks = b.split * chunk;
    const int ke = min(b.klen, b.ks + chunk);
    b.ntiles = ke > b.ks ? (ke - b.ks + kTile - 1) / kTile : 0;
  }

  // Rows of this thread (the accumulator layout): r = 16 w + g + 8 h.
  int row_tok[2], row_head[2];
  bool row_ok[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int flat = mb * kRows + 16 * w + g + 8 * h;
    row_ok[h] = flat < nrows;
    row_tok[h] = row_ok[h] ? flat / p.heads : 0;
    row_head[h] = row_ok[h] ? flat % p.heads : 0;
  }

  if (b.ntiles == 0) {  // nothing to attend in this split: an empty partial result (or zeros)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (!row_ok[h] || t != 0) continue;
      const int64_t row = int64_t(b.qbase + row_tok[h]) * p.heads + row_head[h];
      if (p.num_splits > 1) {
        const int64_t part = int64_t(b.split) * p.num_tokens * p.heads + row;
        if (wg == 0) p.part_ml[part * 2] = -INFINITY, p.part_ml[part * 2 + 1] = 0.0f;
      }
    }
    if (p.num_splits == 1) {
      for (int h = 0; h < 2; ++h) {
        if (!row_ok[h]) continue;
        const int64_t row = int64_t(b.qbase + row_tok[h]) * p.heads + row_head[h];
        __nv_bfloat16* dst = static_cast<__nv_bfloat16*>(p.out) + row * kRank + 256 * wg;
        for (int j = 0; j < 32; ++j)
          *reinterpret_cast<uint32_t*>(dst + 8 * j + 2 * t) = 0u;
      }
    }
    return;
  }

  if (tid == 0) {
    for (int i = 0; i < 2 * kChunks; ++i) mbar_init(bars + i, 1);
    mbar_init_fence();
    tma_prefetch_map(&cache_map);
  }
  __syncthreads();
  // Each cache tile is read once: its copies are marked evict-first in L2.
  const uint64_t policy = l2_evict_first_policy();
  // Chunks [c0, c1) of tile k into buffer buf (one thread issues).
  auto refill = [&](int k, int buf, int c0, int c1) { load_chunks<F>(p, &cache_map, b, smem, bars, k, buf, c0, c1, policy); };
  if (tid == 0) {
    refill(0, 0, 0, kChunks);
    if (b.ntiles > 1) refill(1, 1, 0, kChunks);
  }

  // Q: chunks 0..7 to shared memory (swizzled), chunk 8 into registers as wgmma A fragments.
  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(p.q);
  for (int i = tid; i < kRows * 64; i += kThreads) {  // 64 rows x 64 pieces of 16 bytes (cols 0..511)
    const int r = i >> 6, piece = i & 63, c = piece >> 3, pc = piece & 7;
    const int flat = mb * kRows + r;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (flat < nrows) {
      const int tok = b.qbase + flat / p.heads, head = flat % p.heads;
      v = *reinterpret_cast<const uint4*>(q + tok * p.q_stride_t + head * p.q_stride_h + 8 * piece);
    }
    *reinterpret_cast<uint4*>(smem + kQOff + c * kChunkBytes + sw128(r, pc)) = v;
  }
  uint32_t q8[4][4];
#pragma unroll
  for (int ks = 0; ks < 4; ++ks)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e & 1, col = 512 + 16 * ks + 2 * t + 8 * (e >> 1);
      q8[ks][e] = 0u;
      if (row_ok[h]) {
        const int tok = b.qbase + row_tok[h];
        q8[ks][e] = *reinterpret_cast<const uint32_t*>(q + tok * p.q_stride_t + row_head[h] * p.q_stride_h + col);
      }
    }
  fence_proxy_async();
  __syncthreads();

  const float qscale = p.scale * kLog2e;
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.0f;
  float m_run[2] = {kMinit, kMinit};  // the shared running max (both warpgroups agree on it)
  float l_run[2] = {0.0f, 0.0f};      // this warpgroup's part of the row sums, relative to m_run
  float s[32];
  uint32_t pa[4][4];
  char* sP0 = smem + kP0Off;
  char* sP1 = smem + kP1Off;
  // Rows whose keys may be hidden: tiles from here on need the mask.
  const int mask_from = b.mask ? min(b.masked_from, b.klen - b.qlen) : b.klen - b.qlen;

  const int npairs = (b.ntiles + 1) / 2;
  for (int pr = 0; pr < npairs; ++pr) {
    const int k0 = 2 * pr, k1 = k0 + 1;
    const bool has1 = k1 < b.ntiles;
    const uint32_t parity = uint32_t(pr & 1);
    const int key0 = b.ks + k0 * kTile, key1 = key0 + kTile;
    if (wg == 0) {
      // S0 = Q K0^T, softmax against the running max, O_L = O_L * scale0 + P0 V0_L.
      qk_tile<0, F>(s, smem, bars, parity, q8, wg, wt);
      wgmma_wait<0>();
      fence_regs(s);
      if (wt == 0 && k0 + 2 < b.ntiles) refill(k0 + 2, 0, 8, 9);
      scale_and_mask(s, b, key0, key0 + kTile > mask_from, row_tok, qscale, t);
      float mx[2], m0[2], sc0[2], sum[2];
      row_max(s, mx);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        m0[h] = fmaxf(m_run[h], mx[h]);
        sc0[h] = exp2f(m_run[h] - m0[h]);
      }
      exp_rows(s, m0, sum);
      if (t == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h) sM0[16 * w + g + 8 * h] = m0[h], sS0[16 * w + g + 8 * h] = sc0[h];
      }
      named_bar_arrive(kBarScale0, 256);
      const float one[2] = {1.0f, 1.0f};
      to_a_frags(s, one, pa);
      scale_o(o, sc0);
#pragma unroll
      for (int h = 0; h < 2; ++h) l_run[h] = l_run[h] * sc0[h] + sum[h];
      fence_regs(o);
      fence_regs(pa);
      wgmma_fence();
      pv_regs(o, pa, smem, 0, 0);
      wgmma_commit();
      // Warpgroup 1 has the tile-1 max: rescale P0 to it and hand P0 over.
      named_bar_sync(kBarScale1, 256);
      float m1[2], sc1[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) m1[h] = sM1[16 * w + g + 8 * h], sc1[h] = sS1[16 * w + g + 8 * h];
      store_p(sP0, s, sc1, w, g, t);
      fence_proxy_async();
      named_bar_arrive(kBarP0, 256);
      wgmma_wait<0>();
      fence_regs(o);
      fence_regs(pa);  // the P0 fragments stay untouched until the product that reads them is done
      if (wt == 0 && k0 + 2 < b.ntiles) refill(k0 + 2, 0, 0, 4);
      scale_o(o, sc1);
#pragma unroll
      for (int h = 0; h < 2; ++h) l_run[h] *= sc1[h], m_run[h] = m1[h];
      if (has1) {
        for (int c = 0; c < 4; ++c) mbar_wait(bars + kChunks + c, parity);  // V1_L (already complete)
        fence_regs(o);
        wgmma_fence();
        pv_smem(o, sP1, smem, 1, 0);
        wgmma_commit();
        wgmma_wait<0>();
        fence_regs(o);
        if (wt == 0 && k1 + 2 < b.ntiles) refill(k1 + 2, 1, 0, 4);
      }
    } else {
      // S1 = Q K1^T, softmax against the tile-0 max, O_R = O_R * scale0 * scale1 + P1 V1_R + P0 V0_R.
      if (has1) {
        qk_tile<1, F>(s, smem, bars, parity, q8, wg, wt);
        wgmma_wait<0>();
        fence_regs(s);
        if (wt == 0 && k1 + 2 < b.ntiles) refill(k1 + 2, 1, 8, 9);
        scale_and_mask(s, b, key1, key1 + kTile > mask_from, row_tok, qscale, t);
      } else {
#pragma unroll
        for (int i = 0; i < 32; ++i) s[i] = -INFINITY;
      }
      float mx[2];
      row_max(s, mx);
      named_bar_sync(kBarScale0, 256);
      float m1[2], sc0[2], sc1[2], sum[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float m0 = sM0[16 * w + g + 8 * h];
        sc0[h] = sS0[16 * w + g + 8 * h];
        m1[h] = fmaxf(m0, mx[h]);
        sc1[h] = exp2f(m0 - m1[h]);
      }
      exp_rows(s, m1, sum);
      const float one[2] = {1.0f, 1.0f};
      store_p(sP1, s, one, w, g, t);
      fence_proxy_async();
      if (t == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h) sM1[16 * w + g + 8 * h] = m1[h], sS1[16 * w + g + 8 * h] = sc1[h];
      }
      named_bar_arrive(kBarScale1, 256);
      float f[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        f[h] = sc0[h] * sc1[h];
        l_run[h] = l_run[h] * f[h] + sum[h];
        m_run[h] = m1[h];
      }
      scale_o(o, f);
      if (has1) {
        to_a_frags(s, one, pa);
        fence_regs(o);
        fence_regs(pa);
        wgmma_fence();
        pv_regs(o, pa, smem, 1, 1);
        wgmma_commit();
      }
      named_bar_sync(kBarP0, 256);
      for (int c = 4; c < 8; ++c) mbar_wait(bars + c, parity);  // V0_R (already complete)
      fence_regs(o);
      wgmma_fence();
      pv_smem(o, sP0, smem, 0, 1);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(o);
      fence_regs(pa);
      if (wt == 0) {
        if (has1 && k1 + 2 < b.ntiles) refill(k1 + 2, 1, 4, 8);
        if (k0 + 2 < b.ntiles) refill(k0 + 2, 0, 4, 8);
      }
    }
  }

  // Row sums: warpgroup 0's part joins warpgroup 1's; both then write their half of O.
#pragma unroll
  for (int h = 0; h < 2; ++h) l_run[h] = quad_sum(l_run[h]);
  if (wg == 0 && t == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) sL[16 * w + g + 8 * h] = l_run[h];
  }
  __syncthreads();
  float l_tot[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) l_tot[h] = wg == 1 ? l_run[h] + sL[16 * w + g + 8 * h] : 0.0f;
  __syncthreads();
  if (wg == 1 && t == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) sL[16 * w + g + 8 * h] = l_tot[h];
  }
  __syncthreads();
#pragma unroll
  for (int h = 0; h < 2; ++h) l_tot[h] = sL[16 * w + g + 8 * h];

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!row_ok[h]) continue;
    const int64_t row = int64_t(b.qbase + row_tok[h]) * p.heads + row_head[h];
    if (p.num_splits == 1) {
      const float inv = l_tot[h] > 0.0f ? 1.0f / l_tot[h] : 0.0f;
      __nv_bfloat16* dst = static_cast<__nv_bfloat16*>(p.out) + row * kRank + 256 * wg + 2 * t;
#pragma unroll
      for (int j = 0; j < 32; ++j)
        *reinterpret_cast<uint32_t*>(dst + 8 * j) = pack_bf16x2(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
    } else {
      const int64_t part = int64_t(b.split) * p.num_tokens * p.heads + row;
      float* dst = p.part_out + part * kRank + 256 * wg + 2 * t;
#pragma unroll
      for (int j = 0; j < 32; ++j) *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j + 2 * h], o[4 * j + 2 * h + 1]);
      if (wg == 0 && t == 0) {
        p.part_ml[part * 2] = l_tot[h] > 0.0f ? m_run[h] : -INFINITY;
        p.part_ml[part * 2 + 1] = l_tot[h];
      }
    }
  }
}

// Upper bound of query tokens per sequence (all the batch's extra tokens in one sequence).
int max_qlen(const MlaAbsorbedParams& p) { return std::max(1, p.num_tokens - p.num_seqs + 1); }

}  // namespace

bool mla_decode_sm90_supports(const MlaAbsorbedParams& p) {
  if (!current_device_is_hopper()) return false;
  const bool fp8 = p.cache_dtype == DType::F8_E4M3 || p.cache_dtype == DType::F8_E5M2;
  return p.latent == kLatent && p.kv_rank == kRank && (fp8 || p.cache_dtype == DType::BF16) &&
         p.page_size % kTile == 0 && p.key_shift % kTile == 0 && p.cache_slots > 0 &&
         p.cache_stride % (fp8 ? 16 : 8) == 0 && p.q_stride_t % 8 == 0 && p.q_stride_h % 8 == 0 &&
         reinterpret_cast<uintptr_t>(p.q) % 16 == 0 && reinterpret_cast<uintptr_t>(p.cache) % 16 == 0 &&
         // wide rows only: at 16 heads and one token per sequence a block would be 3/4 padding
         int64_t(max_qlen(p)) * p.heads >= kRows;
}

namespace {
template <CacheFormat F>
cudaError_t launch_format(const MlaAbsorbedParams& p, cudaStream_t stream) {
  CUtensorMap map;
  TensorMapSpec spec{};
  spec.base = p.cache;
  spec.dtype = kIsFp8<F> ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  spec.rank = 2;
  spec.dims[0] = kLatent, spec.dims[1] = uint64_t(p.cache_slots);
  spec.strides_bytes[0] = uint64_t(p.cache_stride) * (kIsFp8<F> ? 1 : 2);
  spec.box[0] = kChunk, spec.box[1] = kTile;
  // FP8 chunks land unswizzled (64-byte rows) and are widened into the swizzled BF16 layout.
  spec.swizzle = kIsFp8<F> ? CU_TENSOR_MAP_SWIZZLE_NONE : CU_TENSOR_MAP_SWIZZLE_128B;
  if (cudaError_t e = make_tensor_map(spec, &map); e != cudaSuccess) return e;
  auto kernel = mla_decode_sm90_kernel<F>;
  if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
      e != cudaSuccess)
    return e;
  const int mblocks = int((int64_t(max_qlen(p)) * p.heads + kRows - 1) / kRows);
  dim3 grid(unsigned(mblocks), unsigned(p.num_splits), unsigned(p.num_seqs));
  kernel<<<grid, kThreads, kSmemBytes, stream>>>(p, map);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_mla_decode_sm90(const MlaAbsorbedParams& p, cudaStream_t stream) {
  if (!mla_decode_sm90_supports(p)) return cudaErrorInvalidValue;
  if (p.cache_dtype == DType::F8_E4M3) return launch_format<CacheFormat::E4m3>(p, stream);
  if (p.cache_dtype == DType::F8_E5M2) return launch_format<CacheFormat::E5m2>(p, stream);
  return launch_format<CacheFormat::Bf16>(p, stream);
}

// Splits as for the mma.sync kernel: waves of blocks x (tiles per split + 1), plus the merge.
int mla_decode_sm90_num_splits(int num_tokens, int num_seqs, int heads, int kv_rank, int max_seq_len) {
  const int sms = current_sm_count();
  const int qmax = std::max(1, num_tokens - num_seqs + 1);
  const int64_t blocks = std::max<int64_t>(1, int64_t(num_seqs) * ((int64_t(qmax) * heads + kRows - 1) / kRows));
  const int64_t max_tiles = std::max<int64_t>(1, (max_seq_len + kTile - 1) / kTile);
  const double tile_bytes = double(kTile) * kLatent * 2;
  int best = 1;
  double best_cost = 1e300;
  for (int s = 1; s <= std::min<int64_t>(kMaxSplits, max_tiles); ++s) {
    const double waves = double((blocks * s + sms - 1) / sms);
    double cost = waves * double((max_tiles + s - 1) / s + 1);
    if (s > 1) cost += 1.0 + double(num_tokens) * heads * kv_rank * 4.0 * (s + 0.5) / (double(sms) * tile_bytes);
    if (cost < best_cost * 0.999) best = s, best_cost = cost;
  }
  return best;
}

}  // namespace dsserve::cuda
