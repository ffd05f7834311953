// The main loop of the W8A8 decode kernels (gemm/w8a8_decode_gemm.cu, moe/moe_w8a8_grouped.cu): one
// warp, kMT m16 tiles of weight rows against kNF fragments of 8 token rows, over the 128-wide K
// chunks [c_begin, c_end). Weights stream from global memory straight into registers kDepth chunks
// ahead (the operand layout of fp8_mma.cuh); per chunk, 4 mma.sync m16n8k32 per (tile, fragment)
// from zero, then the float32 partial times weight scale x token scale is added to the
// accumulators (the block-scale promotion). Kernel code only.
#pragma once
#include <cstdint>

#include "backend/cuda/gemm/fp8_mma.cuh"

namespace dsserve::cuda {

// A warp's weight stream: rows g and g + 8 of each m16 tile, kDepth chunks in flight.
template <int kMT, int kDepth>
struct W8A8WeightStream {
  static constexpr int kChunk = 128;
  uint4 buf[kDepth][kMT][2][2];  // [chunk slot][m tile][row g, g + 8][bytes 16t.., 64 + 16t..]
  const uint8_t* row[kMT][2];    // this lane's rows, offset by 16t bytes
  bool ok[kMT][2];               // rows past the matrix read nothing (zeros)
  const float* scale[kMT];       // the tile's scale row (one per 128 weight rows)

  __device__ __forceinline__ void issue(int slot, int c) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          buf[slot][mt][h][j] =
              ok[mt][h] ? ld_weight_16(row[mt][h] + int64_t(c) * kChunk + j * 64) : make_uint4(0, 0, 0, 0);
  }
  // The first kDepth chunks (before the kernel waits for its inputs, where the weights allow).
  __device__ __forceinline__ void prologue(int c_begin, int c_end) {
#pragma unroll
    for (int s = 0; s < kDepth; ++s)
      if (c_begin + s < c_end) issue(s, c_begin + s);
  }
};

// Activation rows of the lane, gathered (the MoE's rows of an item): token row g of each n fragment
// (row(nf), null: none) and the scale columns of its two accumulator columns 2t, 2t + 1 (negative:
// none) in xs [K / 128, xs_ld].
template <int kNF>
struct W8A8Tokens {
  const uint8_t* xrow[kNF];  // offset by 16t bytes
  int scol[kNF][2];
  const float* xs;
  int64_t xs_ld;
  __device__ __forceinline__ const uint8_t* row(int nf) const { return xrow[nf]; }
  __device__ __forceinline__ int col(int nf, int j) const { return scol[nf][j]; }
};

// The same for T contiguous token rows (the dense linears): computed per use, no per-fragment
// registers (they matter at 32-64 tokens).
template <int kNF>
struct W8A8ContiguousTokens {
  const uint8_t* x0;    // token g's row, offset by 16t bytes
  int64_t frag_stride;  // bytes between fragments: 8 rows
  int T, g, t;
  const float* xs;
  int64_t xs_ld;        // covers T rounded up to 8: both columns of a fragment with a token are readable
  __device__ __forceinline__ const uint8_t* row(int nf) const {
    return nf * 8 + g < T ? x0 + nf * frag_stride : nullptr;
  }
  __device__ __forceinline__ int col(int nf, int j) const { return nf * 8 < T ? nf * 8 + 2 * t + j : -1; }
};

// acc[mt][nf][i] += the products of chunks [c_begin, c_end); the stream's prologue must have been
// issued for c_begin. kXG fragments' activations are loaded together (registers).
template <int kNF, int kMT, int kDepth, int kXG, typename Tokens>
__device__ __forceinline__ void w8a8_mainloop(float (&acc)[kMT][kNF][4], W8A8WeightStream<kMT, kDepth>& ws,
                                              const Tokens& tk, int c_begin, int c_end) {
  constexpr int kChunk = 128;
  for (int c0 = c_begin; c0 < c_end; c0 += kDepth) {
#pragma unroll
    for (int s = 0; s < kDepth; ++s) {
      const int c = c0 + s;
      if (c < c_end) {
        float wsc[kMT];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) wsc[mt] = __ldg(ws.scale[mt] + c);
        const float* xs_c = tk.xs + int64_t(c) * tk.xs_ld;
#pragma unroll
        for (int n0 = 0; n0 < kNF; n0 += kXG) {
          uint4 xa[kXG][2];
          float xsc[kXG][2];
#pragma unroll
          for (int q = 0; q < kXG; ++q) {
            const int nf = n0 + q;
#pragma unroll
            for (int j = 0; j < 2; ++j) {
              const uint8_t* xr = tk.row(nf);
              const int sc = tk.col(nf, j);
              xa[q][j] = xr ? ld_act_16(xr + int64_t(c) * kChunk + j * 64) : make_uint4(0, 0, 0, 0);
              xsc[q][j] = sc >= 0 ? __ldg(xs_c + sc) : 0.0f;
            }
          }
          float pr[kMT][kXG][4];
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int q = 0; q < kXG; ++q)
#pragma unroll
              for (int i = 0; i < 4; ++i) pr[mt][q][i] = 0.0f;
#pragma unroll
          for (int st = 0; st < 4; ++st)
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
              const uint32_t a0 = word_of(ws.buf[s][mt][0][0], st), a1 = word_of(ws.buf[s][mt][1][0], st);
              const uint32_t a2 = word_of(ws.buf[s][mt][0][1], st), a3 = word_of(ws.buf[s][mt][1][1], st);
#pragma unroll
              for (int q = 0; q < kXG; ++q)
                mma_e4m3(pr[mt][q], a0, a1, a2, a3, word_of(xa[q][0], st), word_of(xa[q][1], st));
            }
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int q = 0; q < kXG; ++q) {
              const float s0 = wsc[mt] * xsc[q][0], s1 = wsc[mt] * xsc[q][1];
              float(&a)[4] = acc[mt][n0 + q];
              a[0] = fmaf(pr[mt][q][0], s0, a[0]);
              a[1] = fmaf(pr[mt][q][1], s1, a[1]);
              a[2] = fmaf(pr[mt][q][2], s0, a[2]);
              a[3] = fmaf(pr[mt][q][3], s1, a[3]);
            }
        }
        if (c + kDepth < c_end) ws.issue(s, c + kDepth);
      }
    }
  }
}

}  // namespace dsserve::cuda
