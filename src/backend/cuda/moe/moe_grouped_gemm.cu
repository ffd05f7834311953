// Grouped expert products of the decode path (see moe_grouped_gemm.h and moe/README.md).
//
// A block is 4 warps on one work item (expert e, rows [row_begin, row_end)) and one tile of weight
// rows: 128 rows for Down (32 per warp), or 64 gate rows and the matching 64 up rows for GateUp
// (16 + 16 per warp, so SiLU-and-mul happens in registers). Warps are independent: each streams its
// own 32 weight rows over all of K and keeps its sums in registers (no cross-warp reduction, no
// block barrier).
//
// Per warp and K chunk (128 for FP8, 64 for BF16: 32 bytes of each weight row per lane), weight
// bytes go global -> shared memory through a 3-stage cp.async ring in which each lane reads back
// only what it wrote itself (so no barrier), then to registers, where FP8 becomes scaled BF16 A
// fragments of mma.sync.m16n8k16. Input rows (B fragments) are read straight from global memory:
// the 4 warps of a block, and all blocks of an item, read the same rows (L1 / L2 hits).
// K is permuted inside each chunk so that a lane's operands come in two 16-byte weight pieces:
// lane (g = lane / 4, t = lane % 4) holds weight rows g and g + 8 and input row g over the chunk's
// k in [t KC / 8, (t + 1) KC / 8) and [KC / 2 + t KC / 8, KC / 2 + (t + 1) KC / 8) (its 32 span
// positions, in that order), so the 4 lanes of a row copy 64 contiguous bytes per instruction: two
// whole 32-byte sectors (a lane-contiguous 32-byte span would make each instruction touch half of
// every sector and fetch each sector twice through L2). mma step s uses span positions 4s .. 4s + 3,
// which the m16n8k16 fragment layout sees as logical k {2t, 2t + 1} and {2t + 8, 2t + 9}. Both
// operands use the same permutation, so each dot product is unchanged.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_dequant.cuh"
#include "backend/cuda/common/mma_sync.cuh"
#include "backend/cuda/moe/moe_grouped_gemm.h"

namespace dsserve::cuda {

namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps, kStages = 3;
constexpr int kLaneVecs = 8;  // 16-byte vectors per lane per stage: 2 m16 tiles x rows (g, g + 8) x 32 bytes
constexpr int kDownRowsPerBlock = 32 * kWarps, kGateUpColsPerBlock = 16 * kWarps;

template <bool kFp8>
struct ChunkShape {
  static constexpr int kChunk = kFp8 ? 128 : 64;          // k per chunk (FP8: one scale block)
  static constexpr int kLaneK = kChunk / 4;               // k per lane per chunk (32 weight bytes)
  static constexpr int kSteps = kChunk / 16;              // mma k-steps per chunk
  static constexpr int kXVecs = kLaneK / 8;               // 16-byte BF16 input vectors per lane, row and chunk
  static constexpr int kWBytes = kFp8 ? 1 : 2;
  static_assert(kLaneK * kWBytes == 32, "each lane streams 32 bytes of each of its weight rows per chunk");
};

// The kernel's shared memory is one ring slot per (warp, stage, vector, lane): 48 KiB, the static limit.
static_assert(sizeof(uint4) * kWarps * kStages * kLaneVecs * 32 <= 48 * 1024, "static shared memory limit");

// kNF: n fragments of 8 rows per work item (rows_per_item = 8 * kNF). Four blocks per SM (the shared
// memory allows 4) need <= 128 registers; the 32-row items take 3 rather than spill.
template <bool kFp8, bool kGateUp, int kNF>
__global__ void __launch_bounds__(kThreads, kNF == 4 ? 3 : 4) moe_grouped_gemm_kernel(const MoeGroupedGemmParams p) {
  using S = ChunkShape<kFp8>;
  __shared__ uint4 s_w[kWarps][kStages][kLaneVecs][32];
  if (int(blockIdx.y) >= *p.num_items) return;  // routing produced fewer items than the bound
  const MoeWorkItem item = p.items[blockIdx.y];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t N = p.N, K = p.K, inter = N / 2;

  // This warp's two m16 weight tiles, and the number of valid rows the output side allows.
  int64_t tile_row[2], out_col0, out_cols;
  if constexpr (kGateUp) {
    out_col0 = int64_t(blockIdx.x) * kGateUpColsPerBlock + warp * 16;
    out_cols = inter;
    tile_row[0] = out_col0;
    tile_row[1] = inter + out_col0;
  } else {
    out_col0 = int64_t(blockIdx.x) * kDownRowsPerBlock + warp * 32;
    out_cols = N;
    tile_row[0] = out_col0;
    tile_row[1] = out_col0 + 16;
  }
  if (out_col0 >= out_cols) return;  // a partial last tile: nothing for this warp
  // Output column (and weight row offset within the tile) of fragment row h (g or g + 8) of tile mt.
  auto col_of = [&](int mt, int h) -> int64_t {
    return kGateUp ? out_col0 + g + 8 * h : tile_row[mt] + g + 8 * h;
  };

  const char* w_expert =
      static_cast<const char*>(p.w) + size_t(item.expert) * size_t(N) * size_t(K) * size_t(S::kWBytes);
  const char* w_row[2][2];
  bool w_ok[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      w_ok[mt][h] = col_of(mt, h) < out_cols;
      const int64_t row = tile_row[mt] + g + 8 * h;
      w_row[mt][h] = w_expert + (w_ok[mt][h] ? row : 0) * K * S::kWBytes + t * 16;
    }
  const float* scale_row[2] = {nullptr, nullptr};
  if constexpr (kFp8) {
    const int64_t block_rows = (N + 127) / 128;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
      scale_row[mt] = p.w_scale + (int64_t(item.expert) * block_rows + tile_row[mt] / 128) * p.scale_ld;
  }

  const bf16* x = static_cast<const bf16*>(p.x);
  const bf16* x_row[kNF];
  bool x_ok[kNF];
#pragma unroll
  for (int nf = 0; nf < kNF; ++nf) {
    const int r = item.row_begin + nf * 8 + g;
    x_ok[nf] = r < item.row_end;
    int64_t src = 0;
    if (x_ok[nf]) src = kGateUp ? p.sorted_pair[r] / p.top_k : r;
    x_row[nf] = x + src * p.ldx + t * (S::kChunk / 8);
  }

  auto issue = [&](int c) {
    uint4* slot = &s_w[warp][c % kStages][0][lane];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int64_t k = int64_t(c) * S::kChunk + j * (S::kChunk / 2);  // lane offset t * KC / 8 is in w_row
          const bool ok = w_ok[mt][h] && k + t * (S::kChunk / 8) < K;
          cp_async_16(slot + (mt * 4 + h * 2 + j) * 32, ok ? w_row[mt][h] + k * S::kWBytes : w_expert, ok);
        }
  };

  float acc[2][kNF][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nf][i] = 0.0f;

  const int chunks = int((K + S::kChunk - 1) / S::kChunk);
#pragma unroll
  for (int c = 0; c < kStages - 1; ++c) {
    if (c < chunks) issue(c);
    cp_async_commit();
  }
  for (int c = 0; c < chunks; ++c) {
    compiler_fence();  // the previous iteration's reads of the slot refilled here stay above
    if (c + kStages - 1 < chunks) issue(c + kStages - 1);
    cp_async_commit();

    uint4 xv[kNF][S::kXVecs];
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int v = 0; v < S::kXVecs; ++v) {
        // Span positions 8v .. 8v + 7: piece v / (kXVecs / 2), 8 (v % (kXVecs / 2)) into it.
        const int64_t k = int64_t(c) * S::kChunk + (v / (S::kXVecs / 2)) * (S::kChunk / 2) + (v % (S::kXVecs / 2)) * 8;
        const bool ok = x_ok[nf] && k + t * (S::kChunk / 8) < K;
        xv[nf][v] = ok ? __ldg(reinterpret_cast<const uint4*>(x_row[nf] + k)) : make_uint4(0, 0, 0, 0);
      }
    float scale[2] = {1.0f, 1.0f};
    if constexpr (kFp8) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
        if (w_ok[mt][0]) scale[mt] = __ldg(scale_row[mt] + c);
    }

    cp_async_wait<kStages - 1>();  // this lane's copies of chunk c have landed
    compiler_fence();
    const uint4* slot = &s_w[warp][c % kStages][0][lane];
    uint4 wv[kLaneVecs];
#pragma unroll
    for (int i = 0; i < kLaneVecs; ++i) wv[i] = slot[i * 32];

#pragma unroll
    for (int s = 0; s < S::kSteps; ++s) {
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        if constexpr (kFp8) {  // bytes 4s .. 4s + 3 of the lane's 32: vector s / 4, word s % 4
          const uint32_t lo = word(wv[mt * 4 + 0 + s / 4], s % 4), hi = word(wv[mt * 4 + 2 + s / 4], s % 4);
          a[mt][0] = e4m3x2_to_scaled_bf16x2(lo, scale[mt]);
          a[mt][1] = e4m3x2_to_scaled_bf16x2(hi, scale[mt]);
          a[mt][2] = e4m3x2_to_scaled_bf16x2(lo >> 16, scale[mt]);
          a[mt][3] = e4m3x2_to_scaled_bf16x2(hi >> 16, scale[mt]);
        } else {  // elements 4s .. 4s + 3 of the lane's 16: vector s / 2, words 2 (s % 2) and 2 (s % 2) + 1
          const uint4& lo = wv[mt * 4 + 0 + s / 2];
          const uint4& hi = wv[mt * 4 + 2 + s / 2];
          a[mt][0] = word(lo, 2 * (s % 2));
          a[mt][1] = word(hi, 2 * (s % 2));
          a[mt][2] = word(lo, 2 * (s % 2) + 1);
          a[mt][3] = word(hi, 2 * (s % 2) + 1);
        }
      }
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf) {
        // Input elements 4s .. 4s + 3 of the lane's span: words 2s and 2s + 1.
        const uint32_t b0 = word(xv[nf][(2 * s) / 4], (2 * s) % 4), b1 = word(xv[nf][(2 * s + 1) / 4], (2 * s + 1) % 4);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) mma_bf16_reorderable(acc[mt][nf], a[mt], b0, b1);
      }
    }
  }
  cp_async_wait<0>();

  // Accumulator element i of (mt, nf): weight row g + 8 (i / 2) of tile mt, row nf * 8 + 2t + (i % 2) of the item.
  bf16* y = static_cast<bf16*>(p.y);
#pragma unroll
  for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
    for (int odd = 0; odd < 2; ++odd) {
      const int r = item.row_begin + nf * 8 + 2 * t + odd;
      if (r >= item.row_end) continue;
      if constexpr (kGateUp) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t col = col_of(0, h);
          if (col >= out_cols) continue;
          const float gate = acc[0][nf][2 * h + odd], up = acc[1][nf][2 * h + odd];
          y[int64_t(r) * p.ldy + col] = __float2bfloat16_rn(gate / (1.0f + __expf(-gate)) * up);
        }
      } else {
        const int64_t out_row = p.sorted_pair[r];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t col = col_of(mt, h);
            if (col < out_cols) y[out_row * p.ldy + col] = __float2bfloat16_rn(acc[mt][nf][2 * h + odd]);
          }
      }
    }
}

template <bool kFp8, bool kGateUp>
cudaError_t launch_typed(const MoeGroupedGemmParams& p, dim3 grid, cudaStream_t stream) {
  switch (p.rows_per_item) {
    case 8:
      moe_grouped_gemm_kernel<kFp8, kGateUp, 1><<<grid, kThreads, 0, stream>>>(p);
      break;
    case 16:
      moe_grouped_gemm_kernel<kFp8, kGateUp, 2><<<grid, kThreads, 0, stream>>>(p);
      break;
    case 32:
      moe_grouped_gemm_kernel<kFp8, kGateUp, 4><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_moe_grouped_gemm(const MoeGroupedGemmParams& p, cudaStream_t stream) {
  const bool gate_up = p.kind == MoeGemmKind::GateUp;
  const int64_t out_cols = gate_up ? p.N / 2 : p.N;
  bool ok = p.N > 0 && p.K > 0 && p.K % 8 == 0 && p.ldx % 8 == 0 && p.ldx >= p.K && p.ldy >= out_cols &&
            reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(p.w) % 16 == 0 &&
            p.max_items >= 1 && p.max_items <= 65535 && p.x && p.w && p.y && p.sorted_pair && p.items &&
            p.num_items && (!gate_up || (p.N % 2 == 0 && p.top_k >= 1));
  if (p.fp8) ok = ok && p.w_scale && p.K % 128 == 0 && out_cols % 128 == 0 && p.scale_ld >= p.K / 128;
  if (!ok) return cudaErrorInvalidValue;
  const int64_t tiles = gate_up ? ceil_div(out_cols, kGateUpColsPerBlock) : ceil_div(out_cols, kDownRowsPerBlock);
  const dim3 grid(unsigned(tiles), unsigned(p.max_items));
  if (p.fp8) return gate_up ? launch_typed<true, true>(p, grid, stream) : launch_typed<true, false>(p, grid, stream);
  return gate_up ? launch_typed<false, true>(p, grid, stream) : launch_typed<false, false>(p, grid, stream);
}

}  // namespace dsserve::cuda
