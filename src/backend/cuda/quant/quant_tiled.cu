// The tiled quantized products of prefill sizes (T > kQuantSkinnyMaxTokens; see quant_gemm.h and
// README.md). A block of 8 warps computes a 128 (weight rows) x 128 (tokens) tile of Y; warp (wr,
// wc) owns rows 64 wr .. + 63 (4 m16 tiles) and tokens 32 wc .. + 31 (4 n8 fragments). Both
// operands go global -> shared memory through a kStages cp.async ring, one barrier per K step:
// W4A16 steps 64 k (the repacked unit: 512 bytes per 16 rows, read back as one 16-byte vector per
// lane and tile; activations 128 tokens x 128 bytes), W8A8 steps 128 k (weights and activations
// 128 rows x 128 bytes). Rows of 128 bytes have their 16-byte chunks swizzled (quant_layout.h) so
// the 16-byte fragment loads of a warp hit every bank once per phase. The same fragment maps and
// numerics as the streaming kernel: exact (q - zero) BF16 integers with group partial sums scaled
// in float32, or int32 sums promoted per 128-k block (block INT8) or at the end (channel INT8).
#include <type_traits>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/quant/quant_gemm.h"
#include "backend/cuda/quant/quant_layout.h"
#include "backend/cuda/quant/quant_mma.cuh"

namespace dsserve::cuda {

namespace {

using namespace quant;

constexpr int kWarps = 8, kThreads = 32 * kWarps, kBM = 128, kBN = 128, kMT = 4, kNF = 4;

template <QuantKind kKind>
struct Tiled {
  static constexpr bool kW4 = kKind == QuantKind::W4A16;
  static constexpr int kStepK = kW4 ? 64 : 128;
  static constexpr int kStages = kW4 ? 4 : 3;
  static constexpr int kWBytes = kW4 ? kBM / 16 * kW4UnitBytes : kBM * 128;  // weights per stage
  static constexpr int kXBytes = kBN * 128;                                   // activations per stage
  static constexpr int kStageBytes = kWBytes + kXBytes;
  static constexpr int kSmem = kStages * kStageBytes;
};

template <QuantKind kKind, typename OutT>
__global__ void __launch_bounds__(kThreads, 1) quant_tiled_kernel(const QuantGemmParams p) {
  using S = Tiled<kKind>;
  constexpr bool kW4 = S::kW4, kBlock = kKind == QuantKind::I8Block;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int wr = warp >> 2, wc = warp & 3;
  const int64_t N = p.w.N, K = p.w.K, T = p.T;
  const int64_t row0 = int64_t(blockIdx.x) * kBM, tok0 = int64_t(blockIdx.y) * kBN;
  const int64_t steps = (K + S::kStepK - 1) / S::kStepK;
  const char* w = static_cast<const char*>(p.w.w);
  const char* x = static_cast<const char*>(p.x.x);
  const int64_t x_row_bytes = p.x.ldx * (kW4 ? 2 : 1);

  // Copies of K step `step` into stage `stage`: weights, then activations (16 bytes per thread and copy).
  auto load_stage = [&](int stage, int64_t step) {
    unsigned char* sw = smem + stage * S::kStageBytes;
    unsigned char* sx = sw + S::kWBytes;
    if constexpr (kW4) {
      const int tile = threadIdx.x >> 5;  // 8 tiles of 16 rows: one 512-byte unit each, 16 bytes per thread
      const int64_t gt = row0 / 16 + tile;
      const bool ok = gt * 16 < N;
      const char* src = w + (gt * (K / kW4UnitK) + step) * kW4UnitBytes + lane * 16;
      cp_async_16(sw + tile * kW4UnitBytes + lane * 16, ok ? src : w, ok);
    } else {
#pragma unroll
      for (int i = 0; i < kBM * 8 / kThreads; ++i) {  // 128 rows x 8 chunks
        const int idx = i * kThreads + threadIdx.x, r = idx >> 3, ch = idx & 7;
        const int64_t row = row0 + r, k = step * 128 + ch * 16;
        const bool ok = row < N && k < K;
        cp_async_16(sw + r * 128 + swizzle_chunk(r, ch) * 16, ok ? w + row * K + k : w, ok);
      }
    }
#pragma unroll
    for (int i = 0; i < kBN * 8 / kThreads; ++i) {  // 128 token rows x 8 chunks of 16 bytes
      const int idx = i * kThreads + threadIdx.x, r = idx >> 3, ch = idx & 7;
      const int64_t tok = tok0 + r;
      const int64_t kb = step * 128 + ch * 16;  // byte offset in the row: W4 64 k x 2 bytes, I8 128 k x 1 byte
      const bool ok = tok < T && (kW4 ? step * 64 + ch * 8 < K : kb < K);
      cp_async_16(sx + r * 128 + swizzle_chunk(r, ch) * 16, ok ? x + tok * x_row_bytes + kb : x, ok);
    }
  };

  float acc[kMT][kNF][4];
  using PartT = std::conditional_t<kW4, float, int>;
  PartT part[kMT][kNF][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nf][i] = 0.0f, part[mt][nf][i] = PartT(0);

  uint32_t zero_pair[kMT][2];
  float w_scale[kMT][2];

#pragma unroll
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < steps) load_stage(s, s);
    cp_async_commit();
  }
  for (int64_t step = 0; step < steps; ++step) {
    cp_async_wait<S::kStages - 2>();
    __syncthreads();  // step's stage has landed for every thread; the stage refilled below is free
    if (step + S::kStages - 1 < steps) load_stage(int((step + S::kStages - 1) % S::kStages), step + S::kStages - 1);
    cp_async_commit();
    const unsigned char* sw = smem + int(step % S::kStages) * S::kStageBytes;
    const unsigned char* sx = sw + S::kWBytes;

    if constexpr (kW4) {
      const int64_t k0 = step * kW4UnitK;
      if (k0 % p.w.group == 0) {  // a group starts
        const uint32_t* sz = static_cast<const uint32_t*>(p.w.scale) + (k0 / p.w.group) * p.w.scale_ld;
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t row = row0 + wr * 64 + mt * 16 + g + 8 * h;
            const uint32_t word = row < N ? __ldg(sz + row) : 0u;
            zero_pair[mt][h] = w4_zero_pair(word);
            w_scale[mt][h] = w4_scale(word);
          }
      }
      uint4 wv[kMT];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
        wv[mt] = *reinterpret_cast<const uint4*>(sw + (wr * 4 + mt) * kW4UnitBytes + lane * 16);
#pragma unroll
      for (int v = 0; v < 2; ++v) {
        uint4 xv[kNF];
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf) {
          const int r = wc * 32 + nf * 8 + g;
          xv[nf] = *reinterpret_cast<const uint4*>(sx + r * 128 + swizzle_chunk(r, 4 * v + t) * 16);
        }
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
      if ((k0 + kW4UnitK) % p.w.group == 0) {  // the group ends
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
    } else {
#pragma unroll
      for (int v = 0; v < 2; ++v) {
        uint4 xv[kNF], wg[kMT], wh[kMT];
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf) {
          const int r = wc * 32 + nf * 8 + g;
          xv[nf] = *reinterpret_cast<const uint4*>(sx + r * 128 + swizzle_chunk(r, 4 * v + t) * 16);
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const int r = wr * 64 + mt * 16 + g;
          wg[mt] = *reinterpret_cast<const uint4*>(sw + r * 128 + swizzle_chunk(r, 4 * v + t) * 16);
          wh[mt] = *reinterpret_cast<const uint4*>(sw + (r + 8) * 128 + swizzle_chunk(r + 8, 4 * v + t) * 16);
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
      if constexpr (kBlock) {  // promote the 128-wide block with its token and weight-block scales
        const float wsc = row0 < N ? __ldg(static_cast<const float*>(p.w.scale) + (row0 / 128) * p.w.scale_ld + step)
                                   : 0.0f;
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int odd = 0; odd < 2; ++odd) {
            const int64_t tok = tok0 + wc * 32 + nf * 8 + 2 * t + odd;
            const float sc = tok < T ? __ldg(p.x.x_scale + tok * p.x.x_scale_ld + step) * wsc : 0.0f;
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                acc[mt][nf][2 * h + odd] = fmaf(float(part[mt][nf][2 * h + odd]), sc, acc[mt][nf][2 * h + odd]);
                part[mt][nf][2 * h + odd] = 0;
              }
          }
      }
    }
  }
  cp_async_wait<0>();

  OutT* y = static_cast<OutT*>(p.y);
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + wr * 64 + mt * 16 + g + 8 * h;
      if (row >= N) continue;
      float row_scale = 1.0f;
      if constexpr (kKind == QuantKind::I8Channel) row_scale = __ldg(static_cast<const float*>(p.w.scale) + row);
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int odd = 0; odd < 2; ++odd) {
          const int64_t tok = tok0 + wc * 32 + nf * 8 + 2 * t + odd;
          if (tok >= T) continue;
          float v = acc[mt][nf][2 * h + odd];
          if constexpr (kKind == QuantKind::I8Channel)
            v = float(part[mt][nf][2 * h + odd]) * (__ldg(p.x.x_scale + tok) * row_scale);
          y[tok * p.ldy + row] = out_of<OutT>(v);
        }
    }
}

template <QuantKind kKind, typename OutT>
cudaError_t launch_typed(const QuantGemmParams& p, cudaStream_t stream) {
  auto kernel = quant_tiled_kernel<kKind, OutT>;
  constexpr int smem = Tiled<kKind>::kSmem;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  const int64_t tiles_n = ceil_div(p.w.N, kBM), tiles_t = ceil_div(p.T, kBN);
  if (tiles_t > 65535) return cudaErrorInvalidValue;
  kernel<<<dim3(unsigned(tiles_n), unsigned(tiles_t)), kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_quant_tiled_gemm(const QuantGemmParams& p, cudaStream_t stream) {
  const bool f32 = p.y_dtype == DType::F32;
  switch (p.w.kind) {
    case QuantKind::W4A16:
      return f32 ? launch_typed<QuantKind::W4A16, float>(p, stream) : launch_typed<QuantKind::W4A16, bf16>(p, stream);
    case QuantKind::I8Block:
      return f32 ? launch_typed<QuantKind::I8Block, float>(p, stream)
                 : launch_typed<QuantKind::I8Block, bf16>(p, stream);
    case QuantKind::I8Channel:
      return f32 ? launch_typed<QuantKind::I8Channel, float>(p, stream)
                 : launch_typed<QuantKind::I8Channel, bf16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace dsserve::cuda
