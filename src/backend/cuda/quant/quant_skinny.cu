// The streaming quantized products of decode sizes (see quant_gemm.h; design and bound in README.md).
//
// A block is 4 warps. Each warp owns kMT m16 tiles of weight rows (Dense / Down: kMT x 16
// consecutive rows; GateUp: 16 gate rows and the matching 16 up rows, fused with SiLU-and-mul in
// registers) over one range of K, and all of the call's tokens (kNF fragments of 8). Per 128-wide
// K chunk each lane copies its own 16-byte weight vectors, and the scales the chunk needs, into
// shared memory with cp.async through a kStages ring that only the lane itself reads back (no
// barrier in the main loop); the activation B fragments come straight from global memory (every
// warp of every block reads the same rows: L1 and L2 hits), a chunk ahead up to 16 tokens. quant_layout.h says which weight and activation elements each lane
// holds; both operands share that map.
// W4A16: per 64-k unit a lane has one 16-byte vector per m16 tile (4 words, one per k16 step);
// (q - zero) becomes exact BF16 integers (w4_a_fragment), the group's partial sums are multiplied
// by its F16 scale in float32 when the group (or the block's K range) ends.
// W8A8: per 128-k chunk a lane has two 16-byte vectors for each of its two rows of each tile; int32
// sums are promoted per chunk (block INT8: times the token's and the weight block's scale) or at
// the end (channel INT8: times the token's and the row's scale).
// Dense calls split K over blockIdx.y when the row tiles alone cannot fill the GPU: each block adds
// its float32 partial sums to a workspace, and the last block of a row tile to arrive (a counter)
// sums the parts in split order (deterministic) and writes the output, then resets the counter.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/quant/quant_gemm.h"
#include "backend/cuda/quant/quant_layout.h"
#include "backend/cuda/quant/quant_mma.cuh"

namespace dsserve::cuda {

namespace {

using namespace quant;

constexpr int kWarps = 4, kThreads = 32 * kWarps, kChunkK = 128;

enum class Mode { Dense, GateUp, Down };

// A lane's ring slot per chunk: its weight vectors (kVecs per m16 tile) and its side words, the
// scales the chunk needs (W4: the scale-and-zero words of rows g and g + 8 of each tile for each
// unit that starts a group; block INT8: each tile's weight-block scale and the scales of the C
// tokens 2t, 2t + 1 of each fragment), so that no global load waits inside the main loop. Only at
// two m16 tiles (T <= 32, where it measured 3-23% faster); at one tile (T > 32) the side words would
// more than double an I8 slot and cost a W4 block its occupancy (measured up to 1.44x slower), so the
// scales are read where they are used. The ring is as deep as about 72 KiB per block allows (three
// blocks per SM), at most 8 (W4) or 4 (I8).
template <QuantKind kKind, int kMT, int kNF>
struct Shape {
  static constexpr bool kW4 = kKind == QuantKind::W4A16;
  static constexpr int kVecs = kW4 ? 2 : 4;  // W4: one per 64-k unit; I8: rows g and g + 8, two vectors each
  static constexpr int kWeightVecs = kMT * kVecs;
  static constexpr bool kSideInRing = kMT == 2;
  static constexpr int kSideWords =
      !kSideInRing ? 0 : kW4 ? 4 * kMT : kKind == QuantKind::I8Block ? kMT + 2 * kNF : 0;
  static constexpr int kSlotVecs = kWeightVecs + (kSideWords + 3) / 4;
  static constexpr int kStages = std::min(kW4 ? 8 : 4, 72 * 1024 / (kWarps * kSlotVecs * 32 * 16));
  static constexpr int kSmemBytes = kWarps * kStages * kSlotVecs * 32 * 16;
  // Up to 16 tokens the activation vectors of chunk c + 1 are loaded into registers while chunk c
  // computes; beyond, each is loaded where it is used (registers).
  static constexpr bool kPrefetchX = kNF <= 2;
  static constexpr int kXVecs = kW4 ? 4 : 2;  // per fragment and chunk: W4 (unit, half), I8 half
  static_assert(kStages >= 3, "the ring needs at least three stages");
};

struct SkinnyArgs {
  QuantWeights w;
  int64_t w_expert_bytes = 0, scale_expert_elems = 0;
  QuantActivations x;
  void* y = nullptr;
  int64_t ldy = 0;
  int64_t T = 0;  // Dense: tokens
  int splits = 1;
  float* workspace = nullptr;
  int32_t* counters = nullptr;
  const int32_t* sorted_pair = nullptr;
  int top_k = 1;
  const MoeWorkItem* items = nullptr;
  const int32_t* num_items = nullptr;
};

template <QuantKind kKind, Mode kMode, int kMT, int kNF, typename OutT>
__global__ void __launch_bounds__(kThreads) quant_skinny_kernel(const SkinnyArgs a) {
  using S = Shape<kKind, kMT, kNF>;
  constexpr bool kW4 = S::kW4, kBlock = kKind == QuantKind::I8Block;
  constexpr int kVecs = S::kVecs, kStages = S::kStages, kSlotVecs = S::kSlotVecs;
  static_assert(kMode != Mode::GateUp || kMT == 2, "GateUp pairs one gate tile with one up tile");
  extern __shared__ uint4 s_ring[];  // [kWarps][kStages][kSlotVecs][32]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t N = a.w.N, K = a.w.K;

  MoeWorkItem item{0, 0, 0, 0};
  if constexpr (kMode != Mode::Dense) {
    if (int(blockIdx.y) >= *a.num_items) return;  // fewer items than the bound: the whole block leaves
    item = a.items[blockIdx.y];
  }
  const char* w_base = static_cast<const char*>(a.w.w) + int64_t(item.expert) * a.w_expert_bytes;
  const int64_t scale_base = int64_t(item.expert) * a.scale_expert_elems;

  // This warp's tiles and the output columns they feed.
  int64_t tile_row[kMT];
  int64_t out_limit;
  if constexpr (kMode == Mode::GateUp) {
    const int64_t col0 = int64_t(blockIdx.x) * (kWarps * 16) + warp * 16;
    tile_row[0] = col0;
    tile_row[1] = N / 2 + col0;
    out_limit = N / 2;
  } else {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) tile_row[mt] = int64_t(blockIdx.x) * (kWarps * 16 * kMT) + warp * 16 * kMT + 16 * mt;
    out_limit = N;
  }
  const bool active = tile_row[0] < out_limit;
  bool tile_ok[kMT];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) tile_ok[mt] = active && (kMode == Mode::GateUp ? true : tile_row[mt] < N);

  // Token rows: B fragment rows (token g of each fragment) and C columns (tokens 2t, 2t + 1).
  const int64_t rows_here = kMode == Mode::Dense ? a.T : int64_t(item.row_end - item.row_begin);
  auto x_row_of = [&](int64_t r) -> int64_t {  // r: index among the call's (or item's) rows
    if constexpr (kMode == Mode::Dense) return r;
    if constexpr (kMode == Mode::GateUp) return a.sorted_pair[item.row_begin + r] / a.top_k;
    return item.row_begin + r;
  };
  const void* x_ptr[kNF];
  bool x_ok[kNF];
#pragma unroll
  for (int nf = 0; nf < kNF; ++nf) {
    const int64_t r = nf * 8 + g;
    x_ok[nf] = r < rows_here;
    const int64_t xr = x_ok[nf] ? x_row_of(r) : 0;
    x_ptr[nf] = static_cast<const char*>(a.x.x) + xr * a.x.ldx * (kW4 ? 2 : 1);
  }

  // K range of this block, in chunks.
  const int64_t chunks = (K + kChunkK - 1) / kChunkK;
  int64_t c_begin = 0, c_end = chunks;
  if constexpr (kMode == Mode::Dense) {
    c_begin = int64_t(blockIdx.y) * chunks / a.splits;
    c_end = int64_t(blockIdx.y + 1) * chunks / a.splits;
  }
  if (!active) c_end = c_begin;

  // Scale rows of the C elements' tokens (I8): x_scale row of token nf * 8 + 2t + odd, -1 if none.
  int64_t xs_row[kNF][2];
#pragma unroll
  for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
    for (int odd = 0; odd < 2; ++odd) {
      const int64_t r = nf * 8 + 2 * t + odd;
      xs_row[nf][odd] = kW4 || r >= rows_here ? -1 : x_row_of(r);
    }

  uint4* ring = s_ring + warp * (kStages * kSlotVecs * 32) + lane;
  auto slot_of = [&](int64_t c) { return ring + int((c - c_begin) % kStages) * (kSlotVecs * 32); };
  const int64_t units = K / kW4UnitK;
  const int group = a.w.group;
  // Side word i of a slot (this lane's).
  auto side = [&](const uint4* slot, int i) {
    return reinterpret_cast<const uint32_t*>(slot + (S::kWeightVecs + i / 4) * 32) + (i & 3);
  };
  // W4: whether unit u loads a group's scale-and-zero words (a group starts, or the range does).
  auto group_starts = [&](int64_t u) { return (u * kW4UnitK) % group == 0 || u == 2 * c_begin; };
  auto issue = [&](int64_t c) {
    uint4* slot = slot_of(c);
    auto side_dst = [&](int i) { return const_cast<uint32_t*>(side(slot, i)); };
    if constexpr (!S::kSideInRing) {
    } else if constexpr (kW4) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t u = 2 * c + j;
        if (u >= units || !group_starts(u)) continue;
        const uint32_t* sz =
            static_cast<const uint32_t*>(a.w.scale) + scale_base + (u * kW4UnitK / group) * a.w.scale_ld;
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            cp_async_4(side_dst(j * 2 * kMT + 2 * mt + h), tile_ok[mt] ? sz + tile_row[mt] + g + 8 * h : a.w.scale,
                       tile_ok[mt]);
      }
    } else if constexpr (kBlock) {
      const float* ws = static_cast<const float*>(a.w.scale) + scale_base;
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
        cp_async_4(side_dst(mt), tile_ok[mt] ? ws + (tile_row[mt] / 128) * a.w.scale_ld + c : a.w.scale, tile_ok[mt]);
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int odd = 0; odd < 2; ++odd) {
          const bool ok = xs_row[nf][odd] >= 0;
          cp_async_4(side_dst(kMT + 2 * nf + odd), ok ? a.x.x_scale + xs_row[nf][odd] * a.x.x_scale_ld + c : a.x.x_scale,
                     ok);
        }
    }
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      if constexpr (kW4) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int64_t u = 2 * c + j;
          const bool ok = tile_ok[mt] && u < units;
          const char* src = w_base + ((tile_row[mt] / 16) * units + (ok ? u : 0)) * kW4UnitBytes + lane * 16;
          cp_async_16(slot + (mt * kVecs + j) * 32, ok ? src : a.w.w, ok);
        }
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int v = 0; v < 2; ++v) {
            const int64_t row = tile_row[mt] + g + 8 * h, k = c * kChunkK + i8_vector_k(v, t);
            const bool ok = tile_ok[mt] && row < N && k < K;
            cp_async_16(slot + (mt * kVecs + h * 2 + v) * 32, ok ? w_base + row * K + k : a.w.w, ok);
          }
      }
    }
  };

  float acc[kMT][kNF][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nf][i] = 0.0f;
  // W4: the current group's partial sums; I8: the int32 sums (per chunk for block INT8).
  using PartT = std::conditional_t<kW4, float, int>;
  PartT part[kMT][kNF][4];
  auto clear_part = [&] {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int i = 0; i < 4; ++i) part[mt][nf][i] = PartT(0);
  };
  clear_part();

  // W4: zero pairs and scales of rows g and g + 8 of each tile, for the current group.
  uint32_t zero_pair[kMT][2];
  float w_scale[kMT][2];

  // Activation vector (nf, q) of chunk c: W4 q = 2 j + v (unit j, vector v), I8 q = v.
  auto load_x = [&](int64_t c, int nf, int q) -> uint4 {
    if constexpr (kW4) {
      const int64_t u = 2 * c + q / 2;
      if (!x_ok[nf] || u >= units) return make_uint4(0, 0, 0, 0);
      return __ldg(reinterpret_cast<const uint4*>(static_cast<const bf16*>(x_ptr[nf]) + u * kW4UnitK +
                                                  w4_x_vector_k(q & 1, t)));
    } else {
      const int64_t k = c * kChunkK + i8_vector_k(q, t);
      if (!x_ok[nf] || k >= K) return make_uint4(0, 0, 0, 0);
      return __ldg(reinterpret_cast<const uint4*>(static_cast<const int8_t*>(x_ptr[nf]) + k));
    }
  };
  uint4 x_cur[S::kPrefetchX ? kNF : 1][S::kXVecs];
  if constexpr (S::kPrefetchX) {
    if (c_begin < c_end) {
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int q = 0; q < S::kXVecs; ++q) x_cur[nf][q] = load_x(c_begin, nf, q);
    }
  }
  auto x_vec = [&](int64_t c, int nf, int q) -> uint4 {
    if constexpr (S::kPrefetchX) return x_cur[nf][q];
    else return load_x(c, nf, q);
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (c_begin + s < c_end) issue(c_begin + s);
    cp_async_commit();
  }
  for (int64_t c = c_begin; c < c_end; ++c) {
    uint4 x_next[S::kPrefetchX ? kNF : 1][S::kXVecs];
    if constexpr (S::kPrefetchX) {
      if (c + 1 < c_end) {
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int q = 0; q < S::kXVecs; ++q) x_next[nf][q] = load_x(c + 1, nf, q);
      }
    }
    __syncwarp();
    if (c + kStages - 1 < c_end) issue(c + kStages - 1);
    cp_async_commit();
    cp_async_wait<kStages - 1>();  // this lane's copies of chunk c have landed
    __syncwarp();
    const uint4* slot = slot_of(c);

    if constexpr (kW4) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t u = 2 * c + j;
        if (u >= units) break;
        const int64_t k_unit = u * kW4UnitK;
        if (group_starts(u)) {  // a group starts: its zeros and scales (from the ring at two tiles)
          const uint32_t* sz =
              static_cast<const uint32_t*>(a.w.scale) + scale_base + (k_unit / group) * a.w.scale_ld;
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const uint32_t word = S::kSideInRing ? *side(slot, j * 2 * kMT + 2 * mt + h)
                                    : tile_ok[mt]  ? __ldg(sz + tile_row[mt] + g + 8 * h)
                                                   : 0u;
              zero_pair[mt][h] = w4_zero_pair(word);
              w_scale[mt][h] = w4_scale(word);
            }
        }
        uint4 wv[kMT];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) wv[mt] = slot[(mt * kVecs + j) * 32];
#pragma unroll
        for (int v = 0; v < 2; ++v) {
          uint4 xv[kNF];
#pragma unroll
          for (int nf = 0; nf < kNF; ++nf) xv[nf] = x_vec(c, nf, 2 * j + v);
#pragma unroll
          for (int ss = 0; ss < 2; ++ss) {
            const int s = 2 * v + ss;
            uint32_t af[kMT][4];
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) w4_a_fragment(word_of(wv[mt], s), zero_pair[mt][0], zero_pair[mt][1], af[mt]);
#pragma unroll
            for (int nf = 0; nf < kNF; ++nf) {
              const uint32_t b0 = word_of(xv[nf], 2 * ss), b1 = word_of(xv[nf], 2 * ss + 1);
#pragma unroll
              for (int mt = 0; mt < kMT; ++mt) mma_bf16_16816(part[mt][nf], af[mt], b0, b1);
            }
          }
        }
        if ((k_unit + kW4UnitK) % group == 0 || u + 1 == 2 * c_end || u + 1 == units) {  // the group (or range) ends
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
              for (int i = 0; i < 4; ++i) {
                acc[mt][nf][i] = fmaf(part[mt][nf][i], w_scale[mt][i >> 1], acc[mt][nf][i]);
                part[mt][nf][i] = 0.0f;
              }
        }
      }
    } else {
#pragma unroll
      for (int v = 0; v < 2; ++v) {
        uint4 xv[kNF];
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf) xv[nf] = x_vec(c, nf, v);
        uint4 wg[kMT], wh[kMT];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          wg[mt] = slot[(mt * kVecs + 0 * 2 + v) * 32];
          wh[mt] = slot[(mt * kVecs + 1 * 2 + v) * 32];
        }
#pragma unroll
        for (int ss = 0; ss < 2; ++ss) {
          uint32_t af[kMT][4];
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            af[mt][0] = word_of(wg[mt], 2 * ss);
            af[mt][1] = word_of(wh[mt], 2 * ss);
            af[mt][2] = word_of(wg[mt], 2 * ss + 1);
            af[mt][3] = word_of(wh[mt], 2 * ss + 1);
          }
#pragma unroll
          for (int nf = 0; nf < kNF; ++nf) {
            const uint32_t b0 = word_of(xv[nf], 2 * ss), b1 = word_of(xv[nf], 2 * ss + 1);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) mma_s8_16832(part[mt][nf], af[mt], b0, b1);
          }
        }
      }
      if constexpr (kBlock) {  // promote this 128-wide block: int32 sum x token scale x weight block scale
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const float* ws = static_cast<const float*>(a.w.scale) + scale_base;
          const float wsc = S::kSideInRing ? __uint_as_float(*side(slot, mt))  // zero for a tile past N
                            : tile_ok[mt]   ? __ldg(ws + (tile_row[mt] / 128) * a.w.scale_ld + c)
                                            : 0.0f;
#pragma unroll
          for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
            for (int odd = 0; odd < 2; ++odd) {
              const float xsc =  // zero for a token past the rows
                  S::kSideInRing        ? __uint_as_float(*side(slot, kMT + 2 * nf + odd))
                  : xs_row[nf][odd] >= 0 ? __ldg(a.x.x_scale + xs_row[nf][odd] * a.x.x_scale_ld + c)
                                         : 0.0f;
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                acc[mt][nf][2 * h + odd] = fmaf(float(part[mt][nf][2 * h + odd]), xsc * wsc, acc[mt][nf][2 * h + odd]);
                part[mt][nf][2 * h + odd] = 0;
              }
            }
        }
      }
    }
    if constexpr (S::kPrefetchX) {
      if (c + 1 < c_end) {
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int q = 0; q < S::kXVecs; ++q) x_cur[nf][q] = x_next[nf][q];
      }
    }
  }
  cp_async_wait<0>();

  if constexpr (kKind == QuantKind::I8Channel) {  // int32 sum x token scale x row scale
    const float* ws = static_cast<const float*>(a.w.scale) + scale_base;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = tile_row[mt] + g + 8 * h;
        const float wsc = tile_ok[mt] && row < N ? __ldg(ws + row) : 0.0f;
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int odd = 0; odd < 2; ++odd) {
            const float xsc = xs_row[nf][odd] >= 0 ? __ldg(a.x.x_scale + xs_row[nf][odd]) : 0.0f;
            acc[mt][nf][2 * h + odd] = float(part[mt][nf][2 * h + odd]) * (xsc * wsc);
          }
      }
  }

  // Accumulator element i of (mt, nf): weight row g + 8 (i / 2) of tile mt, row nf * 8 + 2t + (i % 2).
  if constexpr (kMode == Mode::GateUp) {
    if (!active) return;
    bf16* y = static_cast<bf16*>(a.y);
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int odd = 0; odd < 2; ++odd) {
        const int64_t r = nf * 8 + 2 * t + odd;
        if (r >= rows_here) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t col = tile_row[0] + g + 8 * h;
          if (col < out_limit)
            y[(item.row_begin + r) * a.ldy + col] =
                __float2bfloat16_rn(silu_mul(acc[0][nf][2 * h + odd], acc[1][nf][2 * h + odd]));
        }
      }
  } else if constexpr (kMode == Mode::Down) {
    if (!active) return;
    bf16* y = static_cast<bf16*>(a.y);
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int odd = 0; odd < 2; ++odd) {
        const int64_t r = nf * 8 + 2 * t + odd;
        if (r >= rows_here) continue;
        const int64_t out_row = a.sorted_pair[item.row_begin + r];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t col = tile_row[mt] + g + 8 * h;
            if (tile_ok[mt] && col < N) y[out_row * a.ldy + col] = __float2bfloat16_rn(acc[mt][nf][2 * h + odd]);
          }
      }
  } else {
    OutT* y = static_cast<OutT*>(a.y);
    auto for_each = [&](auto&& fn) {  // (token, row, value reference) of every valid element
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int64_t token = nf * 8 + 2 * t + (i & 1), row = tile_row[mt] + g + 8 * (i >> 1);
            if (tile_ok[mt] && token < a.T && row < N) fn(token, row, acc[mt][nf][i]);
          }
    };
    if (a.splits == 1) {
      for_each([&](int64_t token, int64_t row, float& v) { y[token * a.ldy + row] = out_of<OutT>(v); });
      return;
    }
    float* ws = a.workspace;
    const int64_t split_stride = a.T * N;
    for_each([&](int64_t token, int64_t row, float& v) { ws[blockIdx.y * split_stride + token * N + row] = v; });
    __threadfence();
    __syncthreads();
    __shared__ int s_last;
    if (threadIdx.x == 0) s_last = atomicAdd(a.counters + blockIdx.x, 1) == a.splits - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for_each([&](int64_t token, int64_t row, float&) {
      float sum = 0.0f;
      for (int sp = 0; sp < a.splits; ++sp) sum += __ldcg(ws + sp * split_stride + token * N + row);
      y[token * a.ldy + row] = out_of<OutT>(sum);
    });
    if (threadIdx.x == 0) a.counters[blockIdx.x] = 0;  // ready for the next call
  }
}

template <QuantKind kKind, Mode kMode, int kMT, int kNF, typename OutT>
cudaError_t launch_skinny(const SkinnyArgs& a, dim3 grid, cudaStream_t stream) {
  auto kernel = quant_skinny_kernel<kKind, kMode, kMT, kNF, OutT>;
  constexpr int smem = Shape<kKind, kMT, kNF>::kSmemBytes;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

// Dense: kMT = 2 up to 32 tokens, 1 at 33-64 (registers).
template <QuantKind kKind, typename OutT>
cudaError_t dense_by_tokens(const SkinnyArgs& a, dim3 grid_mt2, dim3 grid_mt1, cudaStream_t s) {
  if (a.T <= 8) return launch_skinny<kKind, Mode::Dense, 2, 1, OutT>(a, grid_mt2, s);
  if (a.T <= 16) return launch_skinny<kKind, Mode::Dense, 2, 2, OutT>(a, grid_mt2, s);
  if (a.T <= 32) return launch_skinny<kKind, Mode::Dense, 2, 4, OutT>(a, grid_mt2, s);
  return launch_skinny<kKind, Mode::Dense, 1, 8, OutT>(a, grid_mt1, s);
}

template <QuantKind kKind, Mode kMode>
cudaError_t grouped_by_rows(const SkinnyArgs& a, int rows_per_item, dim3 grid, cudaStream_t s) {
  switch (rows_per_item) {
    case 8: return launch_skinny<kKind, kMode, 2, 1, bf16>(a, grid, s);
    case 16: return launch_skinny<kKind, kMode, 2, 2, bf16>(a, grid, s);
    case 32: return launch_skinny<kKind, kMode, 2, 4, bf16>(a, grid, s);
    default: return cudaErrorInvalidValue;
  }
}

bool weights_valid(const QuantWeights& w) {
  if (!w.w || !w.scale || w.N <= 0 || w.K <= 0 || reinterpret_cast<uintptr_t>(w.w) % 16 != 0) return false;
  switch (w.kind) {
    case QuantKind::W4A16:
      return w.N % 16 == 0 && w.K % kW4UnitK == 0 && w.group > 0 && w.group % kW4UnitK == 0 && w.K % w.group == 0 &&
             w.scale_ld >= w.N;
    case QuantKind::I8Block: return w.K % 16 == 0 && w.scale_ld >= (w.K + 127) / 128;
    case QuantKind::I8Channel: return w.K % 16 == 0;
  }
  return false;
}

bool activations_valid(const QuantKind kind, const QuantActivations& x, int64_t K) {
  const int64_t align = kind == QuantKind::W4A16 ? 8 : 16;
  if (!x.x || x.ldx < K || x.ldx % align != 0 || reinterpret_cast<uintptr_t>(x.x) % 16 != 0) return false;
  if (kind == QuantKind::I8Block) return x.x_scale && x.x_scale_ld >= (K + 127) / 128;
  if (kind == QuantKind::I8Channel) return x.x_scale != nullptr;
  return true;
}

}  // namespace

bool quant_gemm_supports(QuantKind kind, int64_t N, int64_t K, int group) {
  QuantWeights w;
  w.kind = kind, w.N = N, w.K = K, w.group = group;
  w.w = w.scale = reinterpret_cast<const void*>(uintptr_t(256));
  w.scale_ld = kind == QuantKind::W4A16 ? N : (K + 127) / 128;
  return weights_valid(w);
}

QuantGemmPlan plan_quant_gemm(QuantKind kind, int64_t T, int64_t N, int64_t K, int group, int sms) {
  (void)group;
  QuantGemmPlan p;
  p.skinny = T <= kQuantSkinnyMaxTokens;
  if (!p.skinny) return p;
  const int64_t rows_per_block = kWarps * 16 * (T <= 32 ? 2 : 1);
  p.row_tiles = ceil_div(N, rows_per_block);
  // Split K until the blocks fill the GPU about three times (3 resident per SM at 72 KiB of
  // shared memory), keeping at least two chunks per part.
  const int64_t chunks = ceil_div(K, kChunkK), want = 3 * int64_t(std::max(sms, 1));
  int64_t splits = std::max<int64_t>(1, want / std::max<int64_t>(p.row_tiles, 1));
  splits = std::min<int64_t>({splits, std::max<int64_t>(1, chunks / 2), 32});
  p.splits = int(splits);
  (void)kind;
  return p;
}

int64_t quant_gemm_workspace_floats(const QuantGemmPlan& plan, int64_t T, int64_t N) {
  return plan.skinny && plan.splits > 1 ? int64_t(plan.splits) * T * N : 0;
}

cudaError_t launch_quant_tiled_gemm(const QuantGemmParams& p, cudaStream_t stream);  // quant_tiled.cu

cudaError_t launch_quant_gemm(const QuantGemmParams& p, int sms, cudaStream_t stream) {
  if (!weights_valid(p.w) || !activations_valid(p.w.kind, p.x, p.w.K) || !p.y || p.T < 0 || p.ldy < p.w.N ||
      (p.y_dtype != DType::BF16 && p.y_dtype != DType::F32))
    return cudaErrorInvalidValue;
  if (p.T == 0) return cudaSuccess;
  const QuantGemmPlan plan = plan_quant_gemm(p.w.kind, p.T, p.w.N, p.w.K, p.w.group, sms);
  if (!plan.skinny) return launch_quant_tiled_gemm(p, stream);
  if (plan.splits > 1 && (!p.workspace || !p.counters || plan.row_tiles > kQuantGemmMaxCounters))
    return cudaErrorInvalidValue;
  SkinnyArgs a;
  a.w = p.w;
  a.x = p.x;
  a.y = p.y, a.ldy = p.ldy;
  a.T = p.T;
  a.splits = plan.splits;
  a.workspace = p.workspace, a.counters = p.counters;
  const dim3 grid2(unsigned(ceil_div(p.w.N, kWarps * 32)), unsigned(plan.splits));
  const dim3 grid1(unsigned(ceil_div(p.w.N, kWarps * 16)), unsigned(plan.splits));
  const bool f32 = p.y_dtype == DType::F32;
  switch (p.w.kind) {
    case QuantKind::W4A16:
      return f32 ? dense_by_tokens<QuantKind::W4A16, float>(a, grid2, grid1, stream)
                 : dense_by_tokens<QuantKind::W4A16, bf16>(a, grid2, grid1, stream);
    case QuantKind::I8Block:
      return f32 ? dense_by_tokens<QuantKind::I8Block, float>(a, grid2, grid1, stream)
                 : dense_by_tokens<QuantKind::I8Block, bf16>(a, grid2, grid1, stream);
    case QuantKind::I8Channel:
      return f32 ? dense_by_tokens<QuantKind::I8Channel, float>(a, grid2, grid1, stream)
                 : dense_by_tokens<QuantKind::I8Channel, bf16>(a, grid2, grid1, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_quant_grouped_gemm(const QuantGroupedParams& p, cudaStream_t stream) {
  const bool gate_up = p.kind == QuantGroupedKind::GateUp;
  if (!weights_valid(p.w) || !activations_valid(p.w.kind, p.x, p.w.K) || !p.y || !p.sorted_pair || !p.items ||
      !p.num_items || p.max_items < 1 || p.max_items > 65535 || (gate_up && (p.w.N % 32 != 0 || p.top_k < 1)) ||
      p.ldy < (gate_up ? p.w.N / 2 : p.w.N) || p.w_expert_bytes % 16 != 0)
    return cudaErrorInvalidValue;
  if (p.w.kind == QuantKind::I8Block && gate_up && (p.w.N / 2) % 128 != 0) return cudaErrorInvalidValue;
  SkinnyArgs a;
  a.w = p.w;
  a.w_expert_bytes = p.w_expert_bytes, a.scale_expert_elems = p.scale_expert_elems;
  a.x = p.x;
  a.y = p.y, a.ldy = p.ldy;
  a.sorted_pair = p.sorted_pair, a.top_k = p.top_k;
  a.items = p.items, a.num_items = p.num_items;
  const int64_t tiles = gate_up ? ceil_div(p.w.N / 2, kWarps * 16) : ceil_div(p.w.N, kWarps * 32);
  const dim3 grid(unsigned(tiles), unsigned(p.max_items));
  switch (p.w.kind) {
    case QuantKind::W4A16:
      return gate_up ? grouped_by_rows<QuantKind::W4A16, Mode::GateUp>(a, p.rows_per_item, grid, stream)
                     : grouped_by_rows<QuantKind::W4A16, Mode::Down>(a, p.rows_per_item, grid, stream);
    case QuantKind::I8Block:
      return gate_up ? grouped_by_rows<QuantKind::I8Block, Mode::GateUp>(a, p.rows_per_item, grid, stream)
                     : grouped_by_rows<QuantKind::I8Block, Mode::Down>(a, p.rows_per_item, grid, stream);
    case QuantKind::I8Channel:
      return gate_up ? grouped_by_rows<QuantKind::I8Channel, Mode::GateUp>(a, p.rows_per_item, grid, stream)
                     : grouped_by_rows<QuantKind::I8Channel, Mode::Down>(a, p.rows_per_item, grid, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace dsserve::cuda
