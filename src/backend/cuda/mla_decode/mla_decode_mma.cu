// Absorbed (decode) MLA attention on tensor cores with mma.sync (m16n8k16, BF16 in, float32
// accumulation): the default kernel of mla_absorbed.h. One block of 8 warps per (query token, head
// tile, key split); the cache is read in tiles of 64 latent rows (cp.async, 2-3 stages, swizzled
// shared memory) once for all heads of the tile, and the value product reuses the same tile (values
// are its first kv_rank columns). S and P stay in registers; only P's BF16 fragments and per-row
// maxima cross warps, through a few KB of shared memory.
//
// Two shapes of block (README.md has the reasoning):
//  - wide (heads > 16): 64 heads per block in two row groups of 32 heads; the 4 warps of a group each
//    score 16 keys of the tile for the group's 32 heads (two m-tiles), exchange P, and each
//    accumulate a quarter of the output columns (32 heads x 128 columns). Q in shared memory,
//    two cache stages.
//  - narrow (heads <= 16): 16 heads per block, one row group of 8 warps: each warp scores 8 keys and
//    accumulates 64 output columns. Q lives in registers, which leaves room for three cache stages
//    (two tiles in flight), what a bandwidth-bound launch needs.
// FP8 caches (e4m3 / e5m2, scale 1.0): the tiles land in shared memory as FP8 (half the bytes read
// from HBM, twice the tiles in flight) and the products read their operands from the FP8 stage with
// ldmatrix on byte pairs, widening them in registers: S with Q's columns de-interleaved (even, odd)
// in each 16-column k-step, which makes the four bytes a lane gets one B fragment, and P V with the
// output columns of each 16-column chunk split into even and odd n-tiles.
// Instantiated for V3's latent (kv_lora_rank 512 + rope 64) and the tiny test models' (128 + 32);
// other shapes run the scalar kernel. On Hopper the wgmma kernel (sm90/) takes what it supports.
#include "backend/cuda/common/device_props.h"
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_convert.cuh"
#include "backend/cuda/common/mma_sync.cuh"
#include "backend/cuda/mla_decode/fp8_fragments.h"
#include "backend/cuda/mla_decode/mla_absorbed.h"

#include <algorithm>
#include <cmath>

namespace dsserve::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxSmemBytes = 227 * 1024;  // opt-in dynamic shared memory per block on sm_90
constexpr int kMaxSmemBytesSm80 = 163 * 1024;  // on sm_80 (A100): the sm80 kernel set's configurations
constexpr int kBlockKeys = 64;             // cache rows per tile

// Heads per block for a head count (the launcher and mla_decode_mma_num_splits agree through it).
// The sm80 kernel set runs 16-head blocks at any head count: a 64-head block's staged queries and
// two cache stages exceed sm_80's shared memory.
inline int rows_per_block(int heads, bool sm80) { return heads <= 16 || sm80 ? 16 : 64; }

// Element type of the cache an instantiation reads.
enum class CacheFormat { Bf16, E4m3, E5m2 };

// Tile constants of one instantiation.
template <int kLatent_, int kKvRank_, bool kWide, CacheFormat kFormat_, bool kSm80 = false>
struct Cfg {
  static constexpr int kLatent = kLatent_, kKvRank = kKvRank_;
  static constexpr CacheFormat kFormat = kFormat_;
  static constexpr bool kFp8 = kFormat != CacheFormat::Bf16;
  static constexpr bool kFp8Regs = kFp8;  // FP8 operands widened in registers
  static constexpr int kWarps = 8, kThreads = 32 * kWarps;
  static constexpr int kMTiles = kWide ? 2 : 1;                      // 16-head m-tiles per warp
  static constexpr int kGroupWarps = kWide ? 4 : 8;                  // warps sharing one row group
  static constexpr int kGroups = kWarps / kGroupWarps;
  static constexpr int kGroupRows = 16 * kMTiles;                    // heads per row group
  static constexpr int kRows = kGroups * kGroupRows;                 // heads per block
  static constexpr int kKeyTiles = kBlockKeys / 8 / kGroupWarps;     // 8-key n-tiles of S per warp
  static constexpr int kColTiles = kKvRank / 8 / kGroupWarps;        // 8-column n-tiles of O per warp
  static constexpr bool kQInRegs = !kWide;
  static constexpr int kChunks = kLatent / 8;                        // 16-byte chunks per latent row
  static constexpr int kRowChunks = (kChunks + 7) / 8 * 8;           // the swizzle permutes groups of 8
  static constexpr int kRowBytes = kRowChunks * 16;
  // FP8 stage read in registers: rows of kLatent / 16 chunks (one chunk = one k-step of S) padded to
  // a multiple of 4; chunk c of row r sits at c ^ ((r / 2) % 4) (mla_fp8::stage_offset).
  static constexpr int kFp8Chunks = kLatent / 16;
  static constexpr int kFp8RowChunks = (kFp8Chunks + 3) / 4 * 4;
  static constexpr int kKSteps = kLatent / 16;                       // k-steps of S
  // Independent accumulator chains of S, so that a warp with one S fragment still overlaps mma latency.
  static constexpr int kSChains = kMTiles * kKeyTiles >= 4 ? 1 : 4 / (kMTiles * kKeyTiles);
  // Shared memory: [Q (wide only)][kStages cache tiles][P fragments][per-row maxima / sums]. BF16
  // stages are swizzled BF16 tiles; FP8 stages are mla_fp8::stage_offset rows of kFp8RowChunks chunks.
  static constexpr int kQBytes = kQInRegs ? 0 : kRows * kRowBytes;
  static constexpr int kStageRowBytes = kFp8Regs ? kFp8RowChunks * 16 : kRowBytes;
  static constexpr int kStageBytes = kBlockKeys * kStageRowBytes;
  static constexpr int kPBytes = kWarps * kMTiles * kKeyTiles * 32 * 8;  // one uint2 per lane and fragment
  static constexpr int kStatBytes = kWarps * kGroupRows * 4;
  // Cache stages (one being read, the others in flight). An FP8 stage is half a BF16 one: 6 (narrow)
  // / 4 (wide) fit on sm_90; on sm_80 as many as fit its 163 KB (V3's latent: 2 BF16, 4 FP8).
  static constexpr int kStagesSm90 = kWide ? (kFp8Regs ? 4 : 2) : (kFp8Regs ? 6 : 3);
  static constexpr int kStagesFit = (kMaxSmemBytesSm80 - kQBytes - kPBytes - kStatBytes) / kStageBytes;
  static constexpr int kStages = kSm80 && kStagesFit < kStagesSm90 ? kStagesFit : kStagesSm90;
  static_assert(kStages >= 2, "the cache pipeline needs two stages");
  static constexpr int kCopies = kFp8 ? kFp8Chunks : kChunks;               // 16-byte copies per row
  static constexpr int kTilesOffset = kQBytes;
  static constexpr int kPOffset = kTilesOffset + kStages * kStageBytes;
  static constexpr int kStatOffset = kPOffset + kPBytes;
  static constexpr int kSmemBytes = kStatOffset + kStatBytes;

  static_assert(kLatent % 32 == 0, "S loads B fragments for two k-steps (32 latent columns) at a time");
  static_assert(kKvRank < kLatent, "values are the first kv_rank columns of the latent row");
  static_assert(kKvRank % (16 * kGroupWarps) == 0, "each warp's output columns must be whole 16-column pairs");
  static_assert(kKeyTiles >= 1 && kBlockKeys % (8 * kGroupWarps) == 0, "each warp scores whole 8-key n-tiles");
  static_assert(!kQInRegs || kRows * kRowBytes <= kStageBytes,
                "Q is staged through the last cache buffer");
  static_assert(!kFp8 || kLatent % 16 == 0, "FP8 rows are copied in 16-byte pieces");
  static_assert(!kFp8Regs || kFp8RowChunks % 8 == 4,
                "mla_fp8::stage_offset spreads 8 rows over the 8 bank groups only for rows of 4 mod 8 chunks");
  static_assert(!kFp8Regs || kKeyTiles <= 2, "S loads both k-steps of every n-tile with one ldmatrix");
  static_assert(!kFp8Regs || kColTiles % 4 == 0 || kColTiles == 2, "P V loads 2 or 4 n-tiles at a time");
  static_assert(kThreads == 4 * kBlockKeys, "the tile copy gives each cache row four threads");
  static_assert(kSmemBytes <= kMaxSmemBytes, "shared memory over the sm_90 limit");
  static_assert(!kSm80 || kSmemBytes <= kMaxSmemBytesSm80, "shared memory over the sm_80 limit");
};

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled [rows][kRowChunks] tile: the chunk
// index is XORed with row % 8 inside its group of 8, so the 8 rows an ldmatrix phase reads (same
// chunk, consecutive rows) fall in 8 different bank groups.
template <int kRowBytes>
__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
  return uint32_t(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Barrier over the `threads` threads of one row group (named barrier `id`, 1..15).
__device__ __forceinline__ void group_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Programmatic dependent launch: lets the combine kernel be scheduled while this grid runs (it
// still waits for this grid's completion and memory before reading anything).
__device__ __forceinline__ void launch_dependents() {
#if __CUDA_ARCH__ >= 900  // sm_80 has no programmatic launches: the combine kernel waits for the grid
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
}

__device__ int seq_of_token(const int32_t* query_start, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Fragment notation (PTX ISA, mma.m16n8k16): lane = 4 g + t4. A holds rows g and g + 8, columns
// 2 t4 (+1) and 2 t4 + 8 (+1); B holds k = 2 t4 (+1), 2 t4 + 8 (+1) of column g; C holds rows g and
// g + 8, columns 2 t4 (+1). C of two adjacent 8-key n-tiles, rounded to BF16, is A of one k-step of
// P V: that is why P never has to be laid out as a matrix.
template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) mla_decode_mma_kernel(MlaAbsorbedParams p) {
  launch_dependents();
  const int head_tiles = (p.heads + C::kRows - 1) / C::kRows;
  const int hg = int(blockIdx.x % unsigned(head_tiles));
  const int t = int((blockIdx.x / unsigned(head_tiles)) % unsigned(p.num_tokens));
  const int split = int(blockIdx.x / unsigned(head_tiles) / unsigned(p.num_tokens));
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int group = warp / C::kGroupWarps, wig = warp % C::kGroupWarps;  // row group, warp in group
  const int g = lane >> 2, t4 = lane & 3;
  const int h0 = hg * C::kRows;

  // Keys of this (token, split): the split's chunk is a whole number of tiles.
  const int seq = seq_of_token(p.query_start, p.num_seqs, t);
  const int qlen = p.query_start[seq + 1] - p.query_start[seq], i = t - p.query_start[seq];
  const int klen = p.seq_lens[seq], prefix = klen - qlen;
  const int mcols = p.tree_mask ? p.mask_cols[seq] : 0, masked_from = klen - mcols;
  const int32_t* mask = p.tree_mask ? p.tree_mask + p.mask_start[seq] + int64_t(i) * mcols : nullptr;
  const int nk = mask ? klen : prefix + i + 1;  // keys this query may see (a tree mask filters the last ones)
  int chunk = (nk + p.num_splits - 1) / p.num_splits;
  chunk = (chunk + kBlockKeys - 1) / kBlockKeys * kBlockKeys;
  const int ks = split * chunk, ke = min(nk, ks + chunk);
  const int ntiles = ke > ks ? (ke - ks + kBlockKeys - 1) / kBlockKeys : 0;
  const int rows = min(C::kRows, p.heads - h0);

  if (ntiles == 0) {  // an empty split (short sequence, many splits): nothing to merge
    if (p.num_splits > 1) {
      const int64_t base = (int64_t(split) * p.num_tokens + t) * p.heads + h0;
      for (int r = tid; r < rows; r += C::kThreads) {
        p.part_ml[(base + r) * 2] = -INFINITY;
        p.part_ml[(base + r) * 2 + 1] = 0.0f;
      }
    } else {
      bf16* out = static_cast<bf16*>(p.out) + (int64_t(t) * p.heads + h0) * C::kKvRank;
      for (int idx = tid; idx < rows * C::kKvRank; idx += C::kThreads) out[idx] = __float2bfloat16_rn(0.0f);
    }
    return;
  }

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sbase = smem_u32(smem);
  const uint32_t tiles = sbase + C::kTilesOffset;
  uint2* sP = reinterpret_cast<uint2*>(smem + C::kPOffset);             // [warp][m-tile][n-tile][lane]
  float* sStat = reinterpret_cast<float*>(smem + C::kStatOffset) +      // [warp in group][row of group]
                 group * C::kGroupWarps * C::kGroupRows;

  // Queries of the block's heads (zero rows past the last head), into their own region or, when
  // they are to live in registers, into the last cache stage (free until the loop refills it).
  const uint32_t q_s = !C::kQInRegs ? sbase : tiles + (C::kStages - 1) * C::kStageBytes;
  {
    const bf16* qg = static_cast<const bf16*>(p.q) + int64_t(t) * p.q_stride_t;
    for (int idx = tid; idx < C::kRows * C::kChunks; idx += C::kThreads) {
      const int r = idx / C::kChunks, c = idx % C::kChunks;
      const bool ok = r < rows;
      const bf16* src = ok ? qg + int64_t(h0 + r) * p.q_stride_h + 8 * c : qg;
      cp_async_16_u32(q_s + swizzle<C::kRowBytes>(r, c), src, ok);
    }
    cp_async_commit();
  }

  // Cache tiles: thread tid copies row tid / 4 of a tile, chunks tid % 4, tid % 4 + 4, ... The page
  // of the row it copies next is loaded one tile ahead, so no copy waits on the page table.
  const unsigned char* cache = static_cast<const unsigned char*>(p.cache);
  const int64_t cache_row_bytes = p.cache_stride * (C::kFp8 ? 1 : 2);
  const int lrow = tid >> 2, quarter = tid & 3;
  const int32_t* pages = p.page_table + int64_t(seq) * p.max_pages;
  auto page_of = [&](int it) -> int32_t {
    const int key = ks + it * kBlockKeys + lrow;
    if (it >= ntiles || key >= ke) return -1;
    return pages[(key + p.key_shift) / p.page_size];
  };
  auto issue = [&](int it, int32_t page) {
    if (it >= ntiles) return;
    const bool ok = page >= 0;
    const unsigned char* src = cache;
    if (ok) {
      const int pos = ks + it * kBlockKeys + lrow + p.key_shift;
      const int64_t slot = int64_t(page) * p.page_size + pos % p.page_size;
      src = cache + slot * cache_row_bytes;
    }
    const uint32_t stage = tiles + (it % C::kStages) * C::kStageBytes;
#pragma unroll
    for (int j = 0; j < (C::kCopies + 3) / 4; ++j) {
      const int c = quarter + 4 * j;
      const uint32_t dst = C::kFp8Regs ? stage + mla_fp8::stage_offset(lrow, c, C::kStageRowBytes)
                                       : stage + swizzle<C::kRowBytes>(lrow, c);
      if (c < C::kCopies) cp_async_16_u32(dst, src + 16 * c, ok);
    }
  };
  int32_t next_page = page_of(0);
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    issue(s, next_page);
    cp_async_commit();  // one group per stage, empty or not, so the wait counts stay uniform
    next_page = page_of(s + 1);
  }

  uint32_t qf[C::kQInRegs ? C::kKSteps : 1][4];  // A fragments of Q (narrow blocks)
  if constexpr (C::kQInRegs || C::kFp8Regs) {
    cp_async_wait<C::kStages - 1>();  // the Q group
    __syncthreads();
    if constexpr (C::kFp8Regs) {
      // Each k-step's 16 columns of Q reordered as its 8 even columns, then its 8 odd ones: the S
      // loop's B fragments from an FP8 stage hold the keys' columns in that order.
      unsigned char* qb = smem + (q_s - sbase);
      for (int idx = tid; idx < C::kRows * C::kKSteps; idx += C::kThreads) {
        const int r = idx / C::kKSteps, k = idx % C::kKSteps;
        uint4* lo = reinterpret_cast<uint4*>(qb + swizzle<C::kRowBytes>(r, 2 * k));
        uint4* hi = reinterpret_cast<uint4*>(qb + swizzle<C::kRowBytes>(r, 2 * k + 1));
        const uint4 x = *lo, y = *hi;
        *lo = make_uint4(__byte_perm(x.x, x.y, 0x5410), __byte_perm(x.z, x.w, 0x5410),
                         __byte_perm(y.x, y.y, 0x5410), __byte_perm(y.z, y.w, 0x5410));
        *hi = make_uint4(__byte_perm(x.x, x.y, 0x7632), __byte_perm(x.z, x.w, 0x7632),
                         __byte_perm(y.x, y.y, 0x7632), __byte_perm(y.z, y.w, 0x7632));
      }
      __syncthreads();
    }
    if constexpr (C::kQInRegs) {
#pragma unroll
      for (int k = 0; k < C::kKSteps; ++k) ldsm_x4(q_s + swizzle<C::kRowBytes>(lane & 15, 2 * k + (lane >> 4)), qf[k]);
    }
  }

  // Lane-constant parts of the ldmatrix addresses (rows are 8-aligned, so row % 8 == lane % 8).
  const int xr = lane & 7;
  const uint32_t k_lane = uint32_t((wig * C::kKeyTiles * 8 + xr) * C::kRowBytes);  // S: B from the keys
  const int k_chunk = lane >> 3;                                                   // 0..3
  const uint32_t q_lane = uint32_t((group * C::kGroupRows + (lane & 15)) * C::kRowBytes);  // S: A from Q
  const int q_chunk = lane >> 4;                                                   // 0..1
  const uint32_t v_lane = uint32_t((xr + ((lane >> 3) & 1) * 8) * C::kRowBytes);  // P V: B from the values
  const int v_chunk = wig * C::kColTiles + (lane >> 4);

  const float qscale = p.scale * kLog2e;  // scores in log2 units
  float o[C::kMTiles][C::kColTiles][4];
  float m_run[C::kMTiles][2], l_run[C::kMTiles][2];  // rows g and g + 8 of each m-tile
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt) {
#pragma unroll
    for (int j = 0; j < C::kColTiles; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.0f;
  }
  auto sync_group = [&]() {
    if constexpr (C::kGroups == 1) __syncthreads();
    else group_barrier(1 + group, C::kGroupWarps * 32);
  };

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait<C::kStages - 2>();
    __syncthreads();  // tile `it` is visible to all; every warp is done with tile it - 1's buffer
    issue(it + C::kStages - 1, next_page);
    cp_async_commit();
    next_page = page_of(it + C::kStages);
    const uint32_t kbuf = tiles + (it % C::kStages) * C::kStageBytes;
    const int kt = ks + it * kBlockKeys;

    // S = Q K^T for this warp's heads and keys.
    float s[C::kMTiles][C::kKeyTiles][4];
    {
      float acc[C::kSChains][C::kMTiles][C::kKeyTiles][4];
#pragma unroll
      for (int c = 0; c < C::kSChains; ++c)
#pragma unroll
        for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < C::kKeyTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[c][mt][nt][e] = 0.0f;
#pragma unroll
      for (int kp = 0; kp < C::kKSteps / 2; ++kp) {  // 32 latent columns: chunks 4 kp .. 4 kp + 3
        uint32_t b[C::kKeyTiles][4];  // n-tile nt: {b0, b1} of k-step 2 kp, {b0, b1} of k-step 2 kp + 1
        if constexpr (C::kFp8Regs) {
          // Lane (g, t4) gets FP8 columns 4 t4 .. 4 t4 + 3 of key g of the k-step: bytes 0 and 2 are
          // B rows 2 t4, 2 t4 + 1 (b0), bytes 1 and 3 rows 2 t4 + 8, 2 t4 + 9 (b1), which is the order
          // of Q's reordered columns (even columns first).
          uint32_t raw[2 * C::kKeyTiles];  // [n-tile][k-step of the pair]
          const uint32_t addr = kbuf + mla_fp8::stage_offset(mla_fp8::s_row(lane, wig, C::kKeyTiles),
                                                             mla_fp8::s_chunk(lane, kp), C::kStageRowBytes);
          if constexpr (C::kKeyTiles == 2) ldsm_x4(addr, raw);
          else ldsm_x2(addr, raw);
#pragma unroll
          for (int nt = 0; nt < C::kKeyTiles; ++nt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              b[nt][2 * h] = fp8x4_even_to_bf16x2<C::kFormat == CacheFormat::E5m2>(raw[2 * nt + h]);
              b[nt][2 * h + 1] = fp8x4_odd_to_bf16x2<C::kFormat == CacheFormat::E5m2>(raw[2 * nt + h]);
            }
        } else {
#pragma unroll
          for (int nt = 0; nt < C::kKeyTiles; ++nt)
            ldsm_x4(kbuf + k_lane + nt * 8 * C::kRowBytes + (((4 * kp + k_chunk) ^ xr) << 4), b[nt]);
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int k = 2 * kp + h;
          uint32_t a[C::kMTiles][4];
#pragma unroll
          for (int mt = 0; mt < C::kMTiles; ++mt) {
            if constexpr (C::kQInRegs) {
              a[mt][0] = qf[k][0], a[mt][1] = qf[k][1], a[mt][2] = qf[k][2], a[mt][3] = qf[k][3];
            } else {
              ldsm_x4(q_s + q_lane + mt * 16 * C::kRowBytes + (((2 * k + q_chunk) ^ xr) << 4), a[mt]);
            }
          }
#pragma unroll
          for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
            for (int nt = 0; nt < C::kKeyTiles; ++nt)
              mma_bf16(acc[kp % C::kSChains][mt][nt], a[mt], b[nt][2 * h], b[nt][2 * h + 1]);
        }
      }
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < C::kKeyTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float v = acc[0][mt][nt][e];
#pragma unroll
            for (int c = 1; c < C::kSChains; ++c) v += acc[c][mt][nt][e];
            s[mt][nt][e] = v;
          }
    }

    // Mask (past the split's end, or hidden by the tree), scale, and the row maxima of the group.
    bool key_ok[C::kKeyTiles][2];
#pragma unroll
    for (int nt = 0; nt < C::kKeyTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = kt + (wig * C::kKeyTiles + nt) * 8 + 2 * t4 + e;
        bool ok = key < ke;
        if (mask && ok && key >= masked_from) ok = mask[key - masked_from] != 0;
        key_ok[nt][e] = ok;
      }
    float mx[C::kMTiles][2];
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt) {
      mx[mt][0] = mx[mt][1] = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < C::kKeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float v = key_ok[nt][e & 1] ? s[mt][nt][e] * qscale : -INFINITY;
          s[mt][nt][e] = v;
          mx[mt][e >> 1] = fmaxf(mx[mt][e >> 1], v);
        }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mx[mt][h] = fmaxf(mx[mt][h], __shfl_xor_sync(0xffffffffu, mx[mt][h], 1));
        mx[mt][h] = fmaxf(mx[mt][h], __shfl_xor_sync(0xffffffffu, mx[mt][h], 2));
        if (t4 == 0) sStat[wig * C::kGroupRows + mt * 16 + g + 8 * h] = mx[mt][h];
      }
    }
    sync_group();  // (A) every warp's maxima are in sStat

    // New running maxima (identical in every warp of the group), rescale factors, P.
    float alpha[C::kMTiles][2], m_use[C::kMTiles][2];
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float m = m_run[mt][h];
#pragma unroll
        for (int w = 0; w < C::kGroupWarps; ++w) m = fmaxf(m, sStat[w * C::kGroupRows + mt * 16 + g + 8 * h]);
        m_use[mt][h] = m == -INFINITY ? 0.0f : m;  // every key so far masked: P = 0, nothing to rescale
        alpha[mt][h] = exp2f(m_run[mt][h] - m_use[mt][h]);  // 0 on the first tile with a visible key
        m_run[mt][h] = m;
      }
    uint2* p_own = sP + warp * C::kMTiles * C::kKeyTiles * 32 + lane;
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt) {
      float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
      for (int nt = 0; nt < C::kKeyTiles; ++nt) {
        const float p0 = exp2f(s[mt][nt][0] - m_use[mt][0]), p1 = exp2f(s[mt][nt][1] - m_use[mt][0]);
        const float p2 = exp2f(s[mt][nt][2] - m_use[mt][1]), p3 = exp2f(s[mt][nt][3] - m_use[mt][1]);
        rs0 += p0 + p1;
        rs1 += p2 + p3;
        p_own[(mt * C::kKeyTiles + nt) * 32] = make_uint2(pack_bf16(p0, p1), pack_bf16(p2, p3));
      }
      // Per-lane partial sums over this warp's keys; lanes and warps are summed once, at the end.
      l_run[mt][0] = l_run[mt][0] * alpha[mt][0] + rs0;
      l_run[mt][1] = l_run[mt][1] * alpha[mt][1] + rs1;
    }
    bool rescale = false;
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt) rescale |= alpha[mt][0] != 1.0f || alpha[mt][1] != 1.0f;
    if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
        for (int j = 0; j < C::kColTiles; ++j) {
          o[mt][j][0] *= alpha[mt][0];
          o[mt][j][1] *= alpha[mt][0];
          o[mt][j][2] *= alpha[mt][1];
          o[mt][j][3] *= alpha[mt][1];
        }
    }
    sync_group();  // (B) the group's P fragments are in sP

    // O += P V over the tile's 64 keys (4 k-steps), this warp's columns.
    const uint2* p_group = sP + group * C::kGroupWarps * C::kMTiles * C::kKeyTiles * 32 + lane;
#pragma unroll
    for (int kk = 0; kk < kBlockKeys / 16; ++kk) {
      uint32_t a[C::kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        constexpr int kT = C::kKeyTiles;
        const uint2 lo = p_group[(((2 * kk) / kT * C::kMTiles + mt) * kT + (2 * kk) % kT) * 32];
        const uint2 hi = p_group[(((2 * kk + 1) / kT * C::kMTiles + mt) * kT + (2 * kk + 1) % kT) * 32];
        a[mt][0] = lo.x, a[mt][1] = lo.y, a[mt][2] = hi.x, a[mt][3] = hi.y;
      }
      if constexpr (C::kFp8Regs) {
        // ldmatrix.trans of 8 keys x 16 FP8 columns (as 8 x 8 byte pairs) gives lane (g, t4) the columns
        // 2 g, 2 g + 1 of keys 2 t4, 2 t4 + 1: bytes 0 and 2 are b0 (b1 from keys 8 .. 15) of an n-tile
        // of the chunk's even columns, bytes 1 and 3 of one of its odd columns (mla_fp8::pv_column).
        constexpr int kPer = C::kColTiles % 4 == 0 ? 4 : 2;  // n-tiles per ldmatrix (2 chunks or 1)
#pragma unroll
        for (int jp = 0; jp < C::kColTiles / kPer; ++jp) {
          uint32_t r[kPer];  // [chunk of the load][keys 0 .. 7, 8 .. 15]
          const uint32_t addr =
              kbuf + mla_fp8::stage_offset(mla_fp8::v_row(lane, kk), mla_fp8::v_chunk(lane, wig, C::kColTiles, kPer, jp),
                                           C::kStageRowBytes);
          if constexpr (kPer == 4) ldsm_x4_trans(addr, r);
          else ldsm_x2_trans(addr, r);
#pragma unroll
          for (int ci = 0; ci < kPer / 2; ++ci) {
            const uint32_t e0 = fp8x4_even_to_bf16x2<C::kFormat == CacheFormat::E5m2>(r[2 * ci]);
            const uint32_t e1 = fp8x4_even_to_bf16x2<C::kFormat == CacheFormat::E5m2>(r[2 * ci + 1]);
            const uint32_t d0 = fp8x4_odd_to_bf16x2<C::kFormat == CacheFormat::E5m2>(r[2 * ci]);
            const uint32_t d1 = fp8x4_odd_to_bf16x2<C::kFormat == CacheFormat::E5m2>(r[2 * ci + 1]);
#pragma unroll
            for (int mt = 0; mt < C::kMTiles; ++mt) {
              mma_bf16(o[mt][kPer * jp + 2 * ci], a[mt], e0, e1);
              mma_bf16(o[mt][kPer * jp + 2 * ci + 1], a[mt], d0, d1);
            }
          }
        }
      } else {
#pragma unroll
        for (int np = 0; np < C::kColTiles / 2; ++np) {
          uint32_t b[4];  // {b0, b1} of column n-tiles 2 np and 2 np + 1
          ldsm_x4_trans(kbuf + v_lane + kk * 16 * C::kRowBytes + (((v_chunk + 2 * np) ^ xr) << 4), b);
#pragma unroll
          for (int mt = 0; mt < C::kMTiles; ++mt) {
            mma_bf16(o[mt][2 * np], a[mt], b[0], b[1]);
            mma_bf16(o[mt][2 * np + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
  }

  // Row sums: over the 4 lanes of a row, then over the group's warps (sStat is free: every warp
  // has passed the last tile's barrier B, after which nobody reads the maxima).
  float l_tot[C::kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = l_run[mt][h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      if (t4 == 0) sStat[wig * C::kGroupRows + mt * 16 + g + 8 * h] = l;
    }
  sync_group();
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = 0.0f;
#pragma unroll
      for (int w = 0; w < C::kGroupWarps; ++w) l += sStat[w * C::kGroupRows + mt * 16 + g + 8 * h];
      l_tot[mt][h] = l;
    }

  // Output columns of o[mt][j][2 h + e]: col0 + 8 j + e; read from an FP8 stage, colw +
  // mla_fp8::pv_column(j, 2 t4 + e), where n-tiles 2 q and 2 q + 1 give 4 contiguous columns.
  const int col0 = wig * C::kColTiles * 8 + 2 * t4;
  const int colw = wig * C::kColTiles * 8;
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = group * C::kGroupRows + mt * 16 + g + 8 * h;
      if (r >= rows) continue;
      const int head = h0 + r;
      if (p.num_splits == 1) {
        const float inv = l_tot[mt][h] > 0.0f ? 1.0f / l_tot[mt][h] : 0.0f;
        bf16* row_out = static_cast<bf16*>(p.out) + (int64_t(t) * p.heads + head) * C::kKvRank;
        if constexpr (C::kFp8Regs) {
#pragma unroll
          for (int q = 0; q < C::kColTiles / 2; ++q) {
            bf16* dst = row_out + colw + mla_fp8::pv_column(2 * q, 2 * t4);
            *reinterpret_cast<__nv_bfloat162*>(dst) =
                __floats2bfloat162_rn(o[mt][2 * q][2 * h] * inv, o[mt][2 * q + 1][2 * h] * inv);
            *reinterpret_cast<__nv_bfloat162*>(dst + 2) =
                __floats2bfloat162_rn(o[mt][2 * q][2 * h + 1] * inv, o[mt][2 * q + 1][2 * h + 1] * inv);
          }
        } else {
          bf16* dst = row_out + col0;
#pragma unroll
          for (int j = 0; j < C::kColTiles; ++j)
            *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) =
                __floats2bfloat162_rn(o[mt][j][2 * h] * inv, o[mt][j][2 * h + 1] * inv);
        }
      } else {
        const int64_t part = (int64_t(split) * p.num_tokens + t) * p.heads + head;
        float* row_part = p.part_out + part * C::kKvRank;
        if constexpr (C::kFp8Regs) {
#pragma unroll
          for (int q = 0; q < C::kColTiles / 2; ++q) {
            float* dst = row_part + colw + mla_fp8::pv_column(2 * q, 2 * t4);
            *reinterpret_cast<float2*>(dst) = make_float2(o[mt][2 * q][2 * h], o[mt][2 * q + 1][2 * h]);
            *reinterpret_cast<float2*>(dst + 2) = make_float2(o[mt][2 * q][2 * h + 1], o[mt][2 * q + 1][2 * h + 1]);
          }
        } else {
          float* dst = row_part + col0;
#pragma unroll
          for (int j = 0; j < C::kColTiles; ++j)
            *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[mt][j][2 * h], o[mt][j][2 * h + 1]);
        }
        if (wig == 0 && t4 == 0) {
          p.part_ml[part * 2] = m_run[mt][h];  // -inf (with l = 0) when the tree hid every key of the split
          p.part_ml[part * 2 + 1] = l_tot[mt][h];
        }
      }
    }
}

template <class C>
cudaError_t launch_cfg(const MlaAbsorbedParams& p, cudaStream_t stream) {
  auto kernel = mla_decode_mma_kernel<C>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (e != cudaSuccess) return e;
  const int64_t blocks = ceil_div(p.heads, C::kRows) * int64_t(p.num_tokens) * p.num_splits;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  kernel<<<unsigned(blocks), C::kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

template <int kLatent, int kKvRank, CacheFormat kFormat>
cudaError_t launch_format(const MlaAbsorbedParams& p, cudaStream_t stream) {
  if (p.sm80) return launch_cfg<Cfg<kLatent, kKvRank, false, kFormat, true>>(p, stream);
  if (rows_per_block(p.heads, false) == 16) return launch_cfg<Cfg<kLatent, kKvRank, false, kFormat>>(p, stream);
  return launch_cfg<Cfg<kLatent, kKvRank, true, kFormat>>(p, stream);
}

template <int kLatent, int kKvRank>
cudaError_t launch_shape(const MlaAbsorbedParams& p, cudaStream_t stream) {
  if (p.cache_dtype == DType::F8_E4M3) return launch_format<kLatent, kKvRank, CacheFormat::E4m3>(p, stream);
  if (p.cache_dtype == DType::F8_E5M2) return launch_format<kLatent, kKvRank, CacheFormat::E5m2>(p, stream);
  return launch_format<kLatent, kKvRank, CacheFormat::Bf16>(p, stream);
}

}  // namespace

bool mla_decode_mma_supports(const MlaAbsorbedParams& p) {
  const bool shape = (p.latent == 576 && p.kv_rank == 512) || (p.latent == 160 && p.kv_rank == 128);
  const bool fp8 = p.cache_dtype == DType::F8_E4M3 || p.cache_dtype == DType::F8_E5M2;
  if (!fp8 && p.cache_dtype != DType::BF16) return false;
  return shape && p.q_stride_t % 8 == 0 && p.q_stride_h % 8 == 0 && p.cache_stride % (fp8 ? 16 : 8) == 0 &&
         reinterpret_cast<uintptr_t>(p.q) % 16 == 0 && reinterpret_cast<uintptr_t>(p.cache) % 16 == 0;
}

cudaError_t launch_mla_decode_mma(const MlaAbsorbedParams& p, cudaStream_t stream) {
  if (!mla_decode_mma_supports(p)) return cudaErrorInvalidValue;
  if (p.latent == 576) return launch_shape<576, 512>(p, stream);
  return launch_shape<160, 128>(p, stream);
}

// Splits: the count that minimises an estimate of the call's time, in units of one tile's work on
// one SM: waves of blocks x (tiles per split + one for the block's start and end), plus the merge
// (its launch, and its partial results read and written at about the same rate) when split.
int mla_decode_mma_num_splits(int num_tokens, int heads, int kv_rank, int max_seq_len, int cache_bytes, bool sm80) {
  const int sms = current_sm_count();
  const int64_t blocks = std::max<int64_t>(1, int64_t(num_tokens) * ceil_div(heads, rows_per_block(heads, sm80)));
  const int64_t max_tiles = std::max<int64_t>(1, ceil_div(max_seq_len, kBlockKeys));
  const double tile_bytes = double(kBlockKeys) * 576 * cache_bytes;  // FP8: tiles take half as long
  int best = 1;
  double best_cost = 1e300;
  for (int s = 1; s <= std::min<int64_t>(kMaxSplits, max_tiles); ++s) {
    const double waves = double(ceil_div(blocks * s, sms));
    double cost = waves * double(ceil_div(max_tiles, s) + 1);
    if (s > 1) cost += 1.0 + double(num_tokens) * heads * kv_rank * 4.0 * (s + 0.5) / (double(sms) * tile_bytes);
    if (cost < best_cost * 0.999) best = s, best_cost = cost;
  }
  return best;
}

}  // namespace dsserve::cuda
