// The index maps of the quantized mma.sync products (backend/cuda/quant/quant_layout.h), replayed
// on the host: AWQ weights packed as AutoAWQ packs them, repacked exactly as the device repacking
// kernel does, read back lane by lane as the kernels read them (the W4 nibble pairs, the INT8 words,
// the activation vectors), placed into the m16n8k16 / m16n8k32 fragments as the PTX ISA defines
// them, and multiplied: every product must equal the plain dot products of the logical matrices,
// every fragment position must be filled exactly once, and the tiled kernels' 16-byte shared
// memory reads must hit every bank group once per phase.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "backend/cuda/quant/quant_layout.h"
#include "backend/weight_dequant.h"

namespace dsserve::test {
namespace {

using namespace dsserve::cuda::quant;

// AutoAWQ's packing of q [rows = K][cols = N] (values 0..15) into int32 [K][N / 8].
std::vector<int32_t> awq_pack(const std::vector<int>& q, int64_t K, int64_t N) {
  std::vector<int32_t> out(size_t(K * N / 8), 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < N / 8; ++c) {
      uint32_t v = 0;
      for (int i = 0; i < 8; ++i) v |= uint32_t(q[size_t(k * N + 8 * c + kAwqOrder[i])] & 0xF) << (4 * i);
      out[size_t(k * (N / 8) + c)] = int32_t(v);
    }
  return out;
}

// What awq_repack.cu's weight kernel writes, for a weight of N rows and K inputs.
std::vector<uint32_t> repack(const std::vector<int32_t>& qweight, int64_t N, int64_t K) {
  const int64_t units = K / kW4UnitK;
  std::vector<uint32_t> w(size_t(N / 16 * units * 128), 0);
  for (int64_t tile = 0; tile < N / 16; ++tile)
    for (int64_t unit = 0; unit < units; ++unit)
      for (int lane = 0; lane < 32; ++lane)
        for (int s = 0; s < 4; ++s) {
          const int g = lane >> 2, t = lane & 3;
          uint32_t out = 0;
          for (int n = 0; n < 8; ++n) {
            const int64_t row = tile * 16 + w4_nibble_row(n, g), k = unit * kW4UnitK + w4_nibble_k(n, s, t);
            out |= uint32_t(awq_nibble(qweight.data() + k * (N / 8), row)) << (4 * n);
          }
          w[size_t(w4_word_index(tile, unit, lane, s, units))] = out;
        }
  return w;
}

TEST(QuantLayout, W4FragmentsReproduceTheDotProducts) {
  std::mt19937 rng(7);
  const int64_t N = 32, K = 128;  // two m16 tiles, two 64-k units
  std::vector<int> q(static_cast<size_t>(K * N)), zero(static_cast<size_t>(N));
  for (auto& v : q) v = int(rng() % 16);
  for (auto& v : zero) v = int(rng() % 16);
  const std::vector<uint32_t> w = repack(awq_pack(q, K, N), N, K);
  std::vector<float> x(size_t(8 * K));  // 8 tokens
  for (auto& v : x) v = float(int(rng() % 17) - 8);
  for (int64_t tile = 0; tile < N / 16; ++tile)
    for (int64_t unit = 0; unit < K / kW4UnitK; ++unit) {
      std::vector<double> c(16 * 8, 0.0);
      for (int s = 0; s < 4; ++s) {
        // Fragments in PTX position space: A [16][16] (row, k position), B [16][8] (k position, token).
        std::vector<double> A(16 * 16, 1e30), B(16 * 8, 1e30);
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane >> 2, t = lane & 3;
          const uint32_t word = w[size_t(w4_word_index(tile, unit, lane, s, K / kW4UnitK))];
          for (int j = 0; j < 4; ++j) {  // register j: (w >> 4j) & 0x000F000F, low half then high half
            const uint32_t pair = (word >> (4 * j)) & 0x000F000Fu;
            const int row = j & 1 ? g + 8 : g, pos = 2 * t + (j >= 2 ? 8 : 0);
            const int z = zero[size_t(tile * 16 + row)];
            for (int half = 0; half < 2; ++half) {
              double& slot = A[size_t(row * 16 + pos + half)];
              EXPECT_EQ(slot, 1e30) << "A position filled twice";
              slot = double(int((pair >> (16 * half)) & 0xF) - z);
            }
          }
          // Activations: vector s >> 1 of token g, words 2 (s & 1) (b0) and 2 (s & 1) + 1 (b1).
          const int v = s >> 1;
          for (int reg = 0; reg < 2; ++reg)
            for (int half = 0; half < 2; ++half) {
              const int element = 2 * (2 * (s & 1) + reg) + half;  // bf16 element of the 16-byte vector
              const int64_t k = unit * kW4UnitK + w4_x_vector_k(v, t) + element;
              double& slot = B[size_t((2 * t + 8 * reg + half) * 8 + g)];
              EXPECT_EQ(slot, 1e30) << "B position filled twice";
              slot = x[size_t(g * K + k)];
            }
        }
        for (int m = 0; m < 16; ++m)
          for (int n = 0; n < 8; ++n)
            for (int p = 0; p < 16; ++p) c[size_t(m * 8 + n)] += A[size_t(m * 16 + p)] * B[size_t(p * 8 + n)];
      }
      for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) {
          double want = 0;
          const int64_t row = tile * 16 + m;
          for (int64_t k = unit * kW4UnitK; k < (unit + 1) * kW4UnitK; ++k)
            want += double(q[size_t(k * N + row)] - zero[size_t(row)]) * x[size_t(n * K + k)];
          EXPECT_EQ(c[size_t(m * 8 + n)], want) << "tile " << tile << " unit " << unit << " row " << m << " token " << n;
        }
    }
}

TEST(QuantLayout, W4ScaleZeroWordsAndBf16Bias) {
  // The kernels read (128 + q) as BF16 by or-ing the nibble into 0x4300 and subtract (128 + z).
  for (int q = 0; q < 16; ++q) EXPECT_EQ(bf16_to_f32(uint16_t(0x4300 | q)), 128.0f + float(q));
  const uint32_t word = w4_pack_scale_zero(f32_to_f16(0.0123f), 11);
  EXPECT_EQ((word >> 16) & 0xF, 11u);
  EXPECT_EQ(f16_to_f32(uint16_t(word & 0xFFFF)), f16_to_f32(f32_to_f16(0.0123f)));
}

TEST(QuantLayout, Int8FragmentsReproduceTheDotProducts) {
  std::mt19937 rng(11);
  const int64_t K = kI8ChunkK;
  std::vector<int> W(size_t(16 * K)), X(size_t(8 * K));
  for (auto& v : W) v = int(rng() % 255) - 127;
  for (auto& v : X) v = int(rng() % 255) - 127;
  std::vector<int64_t> c(16 * 8, 0);
  std::set<int> k_seen;
  for (int s = 0; s < 4; ++s) {
    std::vector<int64_t> A(16 * 32, INT64_MIN), B(32 * 8, INT64_MIN);
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane >> 2, t = lane & 3;
      for (int reg = 0; reg < 4; ++reg) {  // a0: row g half 0, a1: row g + 8 half 0, a2: row g half 1, a3: row g + 8 half 1
        const int row = reg & 1 ? g + 8 : g, half = reg >> 1;
        for (int i = 0; i < 4; ++i) {
          const int k = i8_step_k(s, half, i, t);
          int64_t& slot = A[size_t(row * 32 + 16 * half + 4 * t + i)];
          EXPECT_EQ(slot, INT64_MIN) << "A position filled twice";
          slot = W[size_t(row * K + k)];
          if (row == 0) k_seen.insert(k);
        }
      }
      for (int half = 0; half < 2; ++half)
        for (int i = 0; i < 4; ++i) {
          int64_t& slot = B[size_t((16 * half + 4 * t + i) * 8 + g)];
          EXPECT_EQ(slot, INT64_MIN) << "B position filled twice";
          slot = X[size_t(g * K + i8_step_k(s, half, i, t))];
        }
    }
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n)
        for (int p = 0; p < 32; ++p) c[size_t(m * 8 + n)] += A[size_t(m * 32 + p)] * B[size_t(p * 8 + n)];
  }
  EXPECT_EQ(k_seen.size(), size_t(K)) << "every k of the chunk once";
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      int64_t want = 0;
      for (int64_t k = 0; k < K; ++k) want += int64_t(W[size_t(m * K + k)]) * X[size_t(n * K + k)];
      EXPECT_EQ(c[size_t(m * 8 + n)], want) << "row " << m << " token " << n;
    }
  // The word a lane reads for (step, half) is bytes 4 (2 (s & 1) + half) .. of its vector s >> 1.
  for (int s = 0; s < 4; ++s)
    for (int t = 0; t < 4; ++t) EXPECT_EQ(i8_step_k(s, 1, 0, t), i8_vector_k(s >> 1, t) + 4 * (2 * (s & 1) + 1));
}

TEST(QuantLayout, TiledSharedMemoryReadsAreConflictFree) {
  // A 16-byte load of a warp runs in 4 phases of 8 lanes; lane (g, t) reads chunk 4 v + t of row base + g.
  for (int base : {0, 8, 16, 32, 64, 72})
    for (int v = 0; v < 2; ++v)
      for (int phase = 0; phase < 4; ++phase) {
        std::set<int> groups;
        for (int lane = 8 * phase; lane < 8 * phase + 8; ++lane) {
          const int row = base + (lane >> 2);
          groups.insert((row * 128 + swizzle_chunk(row, 4 * v + (lane & 3)) * 16) / 16 % 8);
        }
        EXPECT_EQ(groups.size(), 8u) << "base " << base << " vector " << v << " phase " << phase;
      }
  // The swizzle is a permutation of each row's chunks.
  for (int row = 0; row < 4; ++row) {
    std::set<int> chunks;
    for (int c = 0; c < 8; ++c) chunks.insert(swizzle_chunk(row, c));
    EXPECT_EQ(chunks.size(), 8u);
  }
}

}  // namespace
}  // namespace dsserve::test
