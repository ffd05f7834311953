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
// only what it wrote itself (so no barrier), then to registers as A fragments of mma.sync.m16n8k16
// (FP8: exact unscaled BF16 values, the block scale applied per chunk to float32 sums; see below).
// Input rows (B fragments) are read straight from global memory: the 4 warps of a block, and all
// blocks of an item, read the same rows (L1 / L2 hits).
// K is permuted inside each chunk so that a lane's operands are contiguous: lane (g = lane / 4,
// t = lane % 4) holds weight rows g and g + 8 and input row g over the chunk's k range
// [t * KC / 4, (t + 1) * KC / 4), and mma step s uses its offsets 4s .. 4s + 3, which the m16n8k16
// fragment layout sees as logical k {2t, 2t + 1} and {2t + 8, 2t + 9}. Both operands use the same
// permutation, so each dot product is unchanged.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backend/cuda/common/device_utils.cuh"
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
  static constexpr int kWElemsPerVec = kFp8 ? 16 : 8;     // weights per 16-byte vector
  static constexpr int kWBytes = kFp8 ? 1 : 2;
  static_assert(kLaneK * kWBytes == 32, "each lane streams 32 bytes of each of its weight rows per chunk");
};

// The kernel's shared memory is one ring slot per (warp, stage, vector, lane): 48 KiB, the static limit.
static_assert(sizeof(uint4) * kWarps * kStages * kLaneVecs * 32 <= 48 * 1024, "static shared memory limit");
// kSplitK leaves each warp's sums (2 x kNF x 4 floats per lane) in its own ring.
static_assert(2 * 1 * 4 * 32 * sizeof(float) <= sizeof(uint4) * kStages * kLaneVecs * 32, "split-K sums fit a warp's ring");

__device__ __forceinline__ void compiler_fence() { asm volatile("" ::: "memory"); }

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// FP8 weights enter the tensor cores unscaled, and the block scale is applied once per 128-wide K
// chunk to float32 sums (the scale is constant over a 128 x 128 block), which keeps the per-weight
// work to about four instructions per pair: the packed hardware conversion e4m3x2 -> f16x2 (exact;
// e4m3 subnormals become f16 normals), then a shift and two bitwise operations that move each
// half's f16 bits into BF16 position. The exponent field is kept, so each value comes out multiplied by
// 2^(15 - 127) = 2^-112, exactly (e4m3's 3 mantissa bits fit BF16's 7; zero stays zero; the smallest
// e4m3 subnormal, 2^-9, becomes 2^-121, a BF16 normal; 448 becomes 1.75 * 2^-104).
__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2_pow2m112(uint32_t two) {
  uint32_t h;  // the low byte becomes the low half (as __nv_cvt_fp8x2_to_halfraw2, which issues the same)
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(h) : "h"(static_cast<unsigned short>(two & 0xffffu)));
  return (h & 0x80008000u) | ((h >> 3) & 0x0fff0fffu);
}

// The matching BF16 activations are multiplied by 2^64 (each half's exponent field plus 64, an
// integer add that carries into neither the sign nor the other half while |x| < 2^63), so the
// products w x 2^-48 stay far from float32's subnormal range and from overflow; a zero activation
// becomes 2^-63, i.e. 2^-127 once the offset is undone, which is nothing next to any sum. The per-chunk
// multiplier is scale * 2^48. Requirement (documented in the header): finite activations below 2^63
// in magnitude.
constexpr uint32_t kXExpOffset = 0x20002000u;          // 64 << 7 in each BF16 half
constexpr float kChunkUnscale = 281474976710656.0f;    // 2^48 = 2^112 / 2^64

// c[16 x 8] += a[16 x 16] b[16 x 8]: BF16 in, float32 accumulate.
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c[16 x 8] = a[16 x 16] b[16 x 8] (no accumulator input): the first k-step of an FP8 chunk.
__device__ __forceinline__ void mma_16816_zero(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %10, %10, %10};\n"
      : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
}

// kNF: n fragments of 8 rows per work item (rows_per_item = 8 * kNF). Four blocks per SM (the shared
// memory allows 4) need <= 128 registers; the 32-row items take 3 rather than spill.
//
// kSplitK (small batches, where the unsplit grid would leave SMs with few warps): the block's 4 warps
// share one warp tile (32 Down rows, or 16 gate + 16 up rows) and split its K chunks into 4
// consecutive ranges, so 4 times as many blocks stream weights at once; at the end each warp leaves
// its float32 sums in its own (drained) ring and warp 0 adds them in warp order (deterministic) and
// writes the outputs.
template <bool kFp8, bool kGateUp, int kNF, bool kSplitK>
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
    out_col0 = kSplitK ? int64_t(blockIdx.x) * 16 : int64_t(blockIdx.x) * kGateUpColsPerBlock + warp * 16;
    out_cols = inter;
    tile_row[0] = out_col0;
    tile_row[1] = inter + out_col0;
  } else {
    out_col0 = kSplitK ? int64_t(blockIdx.x) * 32 : int64_t(blockIdx.x) * kDownRowsPerBlock + warp * 32;
    out_cols = N;
    tile_row[0] = out_col0;
    tile_row[1] = out_col0 + 16;
  }
  if (out_col0 >= out_cols) return;  // a partial last tile: nothing for this warp (kSplitK: for the block)
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
      w_row[mt][h] = w_expert + (w_ok[mt][h] ? row : 0) * K * S::kWBytes + t * 32;
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
    x_row[nf] = x + src * p.ldx + t * S::kLaneK;
  }

  auto issue = [&](int c) {
    uint4* slot = &s_w[warp][c % kStages][0][lane];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int64_t k = int64_t(c) * S::kChunk + j * S::kWElemsPerVec;  // lane offset t * kLaneK is in w_row
          const bool ok = w_ok[mt][h] && k + t * S::kLaneK < K;
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

  // This warp's K chunks [c_begin, c_end): all of them, or (kSplitK) a quarter.
  int c_begin = 0, c_end = int((K + S::kChunk - 1) / S::kChunk);
  if constexpr (kSplitK) {
    const int per = (c_end + kWarps - 1) / kWarps;
    c_begin = min(c_end, warp * per);
    c_end = min(c_end, c_begin + per);
  }
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (c_begin + i < c_end) issue(c_begin + i);
    cp_async_commit();
  }
  for (int c = c_begin; c < c_end; ++c) {
    compiler_fence();  // the previous iteration's reads of the slot refilled here stay above
    if (c + kStages - 1 < c_end) issue(c + kStages - 1);
    cp_async_commit();

    // Input vector v (8 BF16) of fragment nf for this chunk, zero outside the item or past K.
    auto load_x = [&](int nf, int v) -> uint4 {
      const int64_t k = int64_t(c) * S::kChunk + v * 8;
      const bool ok = x_ok[nf] && k + t * S::kLaneK < K;
      return ok ? __ldg(reinterpret_cast<const uint4*>(x_row[nf] + k)) : make_uint4(0, 0, 0, 0);
    };
    float scale[2] = {1.0f, 1.0f};
    if constexpr (kFp8) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
        if (w_ok[mt][0]) scale[mt] = __ldg(scale_row[mt] + c);
    }

    cp_async_wait<kStages - 1>();  // this lane's copies of chunk c have landed
    compiler_fence();
    const uint4* slot = &s_w[warp][c % kStages][0][lane];
    if constexpr (kFp8) {
      // This chunk's sums start fresh (w 2^-112 times x 2^64) and join the totals times scale 2^48.
      // Weight vectors are read from shared memory half a chunk at a time (16 registers live, not 32).
      float part[2][kNF][4];
      // So are the inputs (vectors 2 (s / 4) and 2 (s / 4) + 1 of each fragment).
      uint4 wq[2][2], xh[kNF][2];
#pragma unroll
      for (int s = 0; s < S::kSteps; ++s) {
        if (s % 4 == 0) {
#pragma unroll
          for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
            for (int j = 0; j < S::kXVecs / 2; ++j) xh[nf][j] = load_x(nf, 2 * (s / 4) + j);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) wq[mt][h] = slot[(mt * 4 + h * 2 + s / 4) * 32];
        }
        uint32_t a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {  // bytes 4s .. 4s + 3 of the lane's 32: vector s / 4, word s % 4
          const uint32_t lo = word(wq[mt][0], s % 4), hi = word(wq[mt][1], s % 4);
          a[mt][0] = e4m3x2_to_bf16x2_pow2m112(lo);
          a[mt][1] = e4m3x2_to_bf16x2_pow2m112(hi);
          a[mt][2] = e4m3x2_to_bf16x2_pow2m112(lo >> 16);
          a[mt][3] = e4m3x2_to_bf16x2_pow2m112(hi >> 16);
        }
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf) {
          // Input elements 4s .. 4s + 3 of the lane's span: words 2s and 2s + 1 (vector s / 2).
          const uint32_t b0 = word(xh[nf][(s % 4) / 2], (2 * s) % 4) + kXExpOffset;
          const uint32_t b1 = word(xh[nf][(s % 4) / 2], (2 * s + 1) % 4) + kXExpOffset;
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            if (s == 0)
              mma_16816_zero(part[mt][nf], a[mt], b0, b1);
            else
              mma_16816(part[mt][nf], a[mt], b0, b1);
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const float m = scale[mt] * kChunkUnscale;
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mt][nf][i] = fmaf(part[mt][nf][i], m, acc[mt][nf][i]);
      }
    } else {
      uint4 xv[kNF][S::kXVecs];
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int v = 0; v < S::kXVecs; ++v) xv[nf][v] = load_x(nf, v);
      uint4 wv[kLaneVecs];
#pragma unroll
      for (int i = 0; i < kLaneVecs; ++i) wv[i] = slot[i * 32];
#pragma unroll
      for (int s = 0; s < S::kSteps; ++s) {
        uint32_t a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {  // elements 4s .. 4s + 3 of the lane's 16: vector s / 2, words 2 (s % 2) and 2 (s % 2) + 1
          const uint4& lo = wv[mt * 4 + 0 + s / 2];
          const uint4& hi = wv[mt * 4 + 2 + s / 2];
          a[mt][0] = word(lo, 2 * (s % 2));
          a[mt][1] = word(hi, 2 * (s % 2));
          a[mt][2] = word(lo, 2 * (s % 2) + 1);
          a[mt][3] = word(hi, 2 * (s % 2) + 1);
        }
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf) {
          // Input elements 4s .. 4s + 3 of the lane's span: words 2s and 2s + 1.
          const uint32_t b0 = word(xv[nf][(2 * s) / 4], (2 * s) % 4), b1 = word(xv[nf][(2 * s + 1) / 4], (2 * s + 1) % 4);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) mma_16816(acc[mt][nf], a[mt], b0, b1);
        }
      }
    }
  }
  cp_async_wait<0>();

  if constexpr (kSplitK) {  // this warp's ring is drained: it holds the warp's sums, [element][lane]
    __syncwarp();  // every lane's copies have landed and its reads of the last chunk are done
    float* mine = reinterpret_cast<float*>(&s_w[warp][0][0][0]);
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int i = 0; i < 4; ++i) mine[((mt * kNF + nf) * 4 + i) * 32 + lane] = acc[mt][nf][i];
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int w = 1; w < kWarps; ++w) {
      const float* theirs = reinterpret_cast<const float*>(&s_w[w][0][0][0]);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mt][nf][i] += theirs[((mt * kNF + nf) * 4 + i) * 32 + lane];
    }
  }

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
cudaError_t launch_typed(const MoeGroupedGemmParams& p, dim3 grid, bool split_k, cudaStream_t stream) {
  if (split_k) {
    if (p.rows_per_item != 8) return cudaErrorInvalidValue;
    moe_grouped_gemm_kernel<kFp8, kGateUp, 1, true><<<grid, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
  switch (p.rows_per_item) {
    case 8:
      moe_grouped_gemm_kernel<kFp8, kGateUp, 1, false><<<grid, kThreads, 0, stream>>>(p);
      break;
    case 16:
      moe_grouped_gemm_kernel<kFp8, kGateUp, 2, false><<<grid, kThreads, 0, stream>>>(p);
      break;
    case 32:
      moe_grouped_gemm_kernel<kFp8, kGateUp, 4, false><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

// Streaming multiprocessors of the current device (a cheap driver query; no synchronisation).
int sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 132;
  return sms;
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
  // Split K when even the bound on the warps would not give every SM 32 (8 items or fewer per
  // tile column on an H200: T <= 2 for DeepSeek-V3); it depends on the shapes and T only.
  bool split_k = p.rows_per_item == 8 && tiles * p.max_items * kWarps < 32 * int64_t(sm_count());
  if (p.split_k >= 0) split_k = p.split_k == 1 && p.rows_per_item == 8;
  const int64_t warp_tiles = gate_up ? ceil_div(out_cols, 16) : ceil_div(out_cols, 32);
  const dim3 grid(unsigned(split_k ? warp_tiles : tiles), unsigned(p.max_items));
  if (p.fp8)
    return gate_up ? launch_typed<true, true>(p, grid, split_k, stream) : launch_typed<true, false>(p, grid, split_k, stream);
  return gate_up ? launch_typed<false, true>(p, grid, split_k, stream) : launch_typed<false, false>(p, grid, split_k, stream);
}

}  // namespace dsserve::cuda
