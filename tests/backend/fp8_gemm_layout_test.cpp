// The index maps of the sm90 block-FP8 GEMM (gemm/sm90/fp8_gemm_layout.h), replayed on the host:
// the tensor cores read, through the wgmma descriptor at every k32 step, exactly the bytes the
// copy engine's 128-byte swizzle placed for that row and K; the m64nN accumulator fragment covers
// each tile element once and the epilogue's row/column formula is the fragment's; each n8 chunk
// picks the weight-scale block of its columns; the persistent scheduler hands out every tile once
// (dense, batched, expert-grouped with empty experts), in the rows the expert segments own; the
// grouped layout's row bound holds; the tile-shape choice is the cheapest instantiated shape.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "backend/cuda/gemm/sm90/fp8_gemm_layout.h"

namespace dsserve::cuda::sm90 {
namespace {

TEST(Fp8GemmLayout, SwizzleIsAPermutationOfEachAtom) {
  for (uint32_t r0 = 0; r0 < 64; r0 += 8) {
    std::set<uint32_t> seen;
    for (uint32_t r = r0; r < r0 + 8; ++r)
      for (uint32_t b = 0; b < 128; ++b) {
        const uint32_t o = swizzle128_offset(r, b);
        EXPECT_GE(o, r0 * 128);
        EXPECT_LT(o, (r0 + 8) * 128);
        EXPECT_EQ(o / 128, r) << "a row stays in its 128 bytes";
        EXPECT_EQ(o % 16, b % 16) << "16-byte chunks move whole";
        seen.insert(o);
      }
    EXPECT_EQ(seen.size(), 1024u);
  }
  EXPECT_EQ(swizzle128_offset(3, 16), 3u * 128 + (1u ^ 3u) * 16);
}

TEST(Fp8GemmLayout, DescriptorFields) {
  const uint32_t base = 0x12400;  // 1024-byte aligned shared-memory address
  const uint64_t d = make_smem_desc(base);
  EXPECT_EQ(d & 0x3FFF, base >> 4);
  EXPECT_EQ((d >> 16) & 0x3FFF, 0u) << "leading byte offset unused for swizzled K-major";
  EXPECT_EQ((d >> 32) & 0x3FFF, 1024u >> 4) << "stride byte offset: 8 rows of 128 bytes";
  EXPECT_EQ((d >> 49) & 7, 0u) << "base offset: buffers are 1024-byte aligned";
  EXPECT_EQ(d >> 62, 1u) << "swizzle mode 1 = 128B";
  EXPECT_EQ(desc_advance_k(d, 3) - d, uint64_t(96 >> 4));
}

TEST(Fp8GemmLayout, DescriptorReadsWhatTheCopyPlaced) {
  // Stage buffers and the warpgroup / wave offsets inside them (multiples of 1024 bytes).
  for (uint32_t stage_base : {0x0u, 0x8000u, 0x1C400u}) {
    for (uint32_t row_offset : {0u, 64u, 128u, 192u}) {
      const uint32_t base = stage_base + row_offset * 128;
      ASSERT_EQ(base % 1024, 0u);
      for (uint32_t kk = 0; kk < 4; ++kk) {
        const uint64_t d = desc_advance_k(make_smem_desc(base), kk);
        for (uint32_t r = 0; r < 64; ++r)
          for (uint32_t k = 0; k < 32; ++k)
            ASSERT_EQ(desc_read_address(d, r, k), base + swizzle128_offset(r, kk * 32 + k))
                << "stage " << stage_base << " row offset " << row_offset << " kk " << kk << " row " << r << " k " << k;
      }
    }
  }
}

TEST(Fp8GemmLayout, AccumulatorFragmentCoversTheTileOnce) {
  for (int n = 16; n <= 256; n += 8) {
    std::vector<int> hits(size_t(64 * n), 0);
    for (int tid = 0; tid < 128; ++tid) {
      const FragCoord base = accum_coord(tid, 0);
      for (int i = 0; i < n / 2; ++i) {
        const FragCoord c = accum_coord(tid, i);
        ASSERT_LT(c.row, 64);
        ASSERT_LT(c.col, n);
        ++hits[size_t(c.row * n + c.col)];
        // The kernel's epilogue and promotion: value 4j + 2h + e is (row0 + 8h, 8j + col0 + e),
        // and chunk j = i / 4 holds columns 8j .. 8j + 7.
        const int j = i / 4, h = (i / 2) % 2, e = i % 2;
        EXPECT_EQ(c.row, base.row + 8 * h);
        EXPECT_EQ(c.col, 8 * j + base.col + e);
        EXPECT_EQ(c.col / 8, j);
      }
      // Warp w holds rows 16w .. 16w + 15; lane g = lane / 4 rows g and g + 8; t = lane % 4 column pairs.
      EXPECT_EQ(base.row, 16 * (tid / 32) + (tid % 32) / 4);
      EXPECT_EQ(base.col, 2 * (tid % 4));
    }
    for (int v : hits) ASSERT_EQ(v, 1) << "N = " << n;
  }
  // The brief's example: lane 13 of warp 2 (g = 3, t = 1), chunk 5.
  const FragCoord c = accum_coord(2 * 32 + 13, 4 * 5 + 3);
  EXPECT_EQ(c.row, 32 + 3 + 8);
  EXPECT_EQ(c.col, 40 + 2 + 1);
}

TEST(Fp8GemmLayout, ChunksPickTheirScaleBlock) {
  for (const TileShape& s : kDenseShapes) {
    ASSERT_TRUE(tile_meets_two_scale_blocks_at_most(s.bn)) << s.bn;
    for (int64_t n0 = 0; n0 < 8192; n0 += s.bn) {
      const int former = former_chunks(n0, s.bn);
      for (int j = 0; j < s.bn / 8; ++j) {
        const int64_t block = (n0 + 8 * j) / 128;
        // The chunk's 8 columns share a block (blocks are 128-aligned, chunks 8-aligned).
        EXPECT_EQ((n0 + 8 * j + 7) / 128, block);
        EXPECT_EQ(block, n0 / 128 + (j < former ? 0 : 1)) << "BN " << s.bn << " n0 " << n0 << " chunk " << j;
      }
    }
  }
  EXPECT_FALSE(tile_meets_two_scale_blocks_at_most(176));  // 176-wide tiles can meet three blocks
}

template <int BM, int BN>
void check_batched(int64_t M, int64_t N, int batch, int64_t grid) {
  std::map<std::tuple<int, int64_t, int64_t>, int> seen;
  for (int64_t cta = 0; cta < grid; ++cta) {
    TileScheduler<BM, BN> s(ScheduleKind::Batched, M, N, batch, nullptr, cta, grid);
    Tile t;
    while (s.next_tile(t)) {
      EXPECT_EQ(t.row0, t.m_block * BM);
      EXPECT_EQ(t.n0, t.n_block * BN);
      EXPECT_EQ(t.row_end, M);
      EXPECT_LT(t.row0, M);
      EXPECT_LT(t.n0, N);
      ++seen[{t.group, t.m_block, t.n_block}];
    }
  }
  const int64_t mb = ceil_div64(M, BM), nb = ceil_div64(N, BN);
  EXPECT_EQ(int64_t(seen.size()), mb * nb * batch) << M << "x" << N << " batch " << batch << " grid " << grid;
  for (const auto& [k, v] : seen) EXPECT_EQ(v, 1);
}

TEST(Fp8GemmLayout, BatchedScheduleCoversEveryTileOnce) {
  check_batched<128, 128>(4096, 2112, 1, 132);
  check_batched<128, 136>(4096, 2112, 1, 132);
  check_batched<256, 128>(300, 520, 1, 132);
  check_batched<128, 160>(3000, 7168, 1, 132);  // partial m-group at the end
  check_batched<64, 128>(64, 512, 128, 132);    // per-head products
  check_batched<128, 112>(1, 2, 1, 1);
}

TEST(Fp8GemmLayout, GroupedScheduleCoversEveryExpertTileOnce) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int E = 1 + int(rng() % 70);
    std::vector<int32_t> counts(static_cast<size_t>(E)), ends(static_cast<size_t>(E));
    int64_t pairs = 0;
    for (auto& c : counts) {
      c = rng() % 3 == 0 ? 0 : int32_t(rng() % 400);
      pairs += c;
    }
    // The prefill grouping kernel's layout: an exclusive scan of counts padded to 128.
    int64_t start = 0;
    for (int e = 0; e < E; ++e) {
      ends[size_t(e)] = int32_t(start + counts[size_t(e)]);
      EXPECT_EQ(group_start(ends.data(), e), start);
      start += align_up64(counts[size_t(e)], kGroupBlockM);
    }
    EXPECT_LE(start, grouped_max_rows(pairs, E));
    constexpr int BM = 128, BN = 128;
    const int64_t N = 64 + int64_t(rng() % 600);
    const int64_t grid = 1 + int64_t(rng() % 140);
    std::map<std::tuple<int, int64_t, int64_t>, int> seen;
    for (int64_t cta = 0; cta < grid; ++cta) {
      TileScheduler<BM, BN> s(ScheduleKind::Grouped, grouped_max_rows(pairs, E), N, E, ends.data(), cta, grid);
      Tile t;
      while (s.next_tile(t)) {
        const int64_t gs = group_start(ends.data(), t.group);
        EXPECT_EQ(t.row0, gs + t.m_block * BM);
        EXPECT_EQ(t.row_end, ends[size_t(t.group)]);
        EXPECT_LT(t.row0, t.row_end);
        ++seen[{t.group, t.m_block, t.n_block}];
      }
    }
    int64_t expected = 0;
    for (int32_t c : counts) expected += ceil_div64(c, BM) * ceil_div64(N, BN);
    EXPECT_EQ(int64_t(seen.size()), expected);
    for (const auto& [k, v] : seen) EXPECT_EQ(v, 1);
  }
}

// CTA pairs: both members walk the same number of tiles in lockstep, share the n-block (PairM) or
// the m-block (PairN) of every step, and the stored tiles cover every tile once.
template <int BM, int BN>
void check_pairs(ScheduleKind kind, Pairing pairing, int64_t M, int64_t N, int batch, const std::vector<int32_t>& ends,
                 int64_t clusters) {
  std::map<std::tuple<int, int64_t, int64_t>, int> stored;
  for (int64_t c = 0; c < clusters; ++c) {
    TileScheduler<BM, BN> s0(kind, M, N, batch, ends.data(), c, clusters, pairing, 0);
    TileScheduler<BM, BN> s1(kind, M, N, batch, ends.data(), c, clusters, pairing, 1);
    Tile t0, t1;
    while (true) {
      const bool a = s0.next_tile(t0), b = s1.next_tile(t1);
      ASSERT_EQ(a, b) << "pair members must walk in lockstep";
      if (!a) break;
      EXPECT_EQ(t0.group, t1.group);
      if (pairing == Pairing::PairM) {
        EXPECT_EQ(t0.n_block, t1.n_block);
      }
      if (pairing == Pairing::PairN) {
        EXPECT_EQ(t0.row0, t1.row0);
      }
      EXPECT_TRUE(t0.store) << "the first member always has a tile of its own";
      for (const Tile* t : {&t0, &t1})
        if (t->store) ++stored[{t->group, t->m_block, t->n_block}];
    }
  }
  int64_t expected = 0;
  if (kind == ScheduleKind::Batched) {
    expected = ceil_div64(M, BM) * ceil_div64(N, BN) * batch;
  } else {
    for (int e = 0; e < batch; ++e)
      expected += ceil_div64(ends[size_t(e)] - group_start(ends.data(), e), BM) * ceil_div64(N, BN);
  }
  EXPECT_EQ(int64_t(stored.size()), expected);
  for (const auto& [k, v] : stored) EXPECT_EQ(v, 1);
}

TEST(Fp8GemmLayout, PairedSchedulesStayInLockstepAndCoverOnce) {
  check_pairs<128, 128>(ScheduleKind::Batched, Pairing::PairM, 4096, 7168, 1, {}, 66);
  check_pairs<128, 136>(ScheduleKind::Batched, Pairing::PairM, 4096, 2112, 1, {}, 66);
  check_pairs<128, 128>(ScheduleKind::Batched, Pairing::PairM, 300, 520, 1, {}, 66);  // odd m-blocks
  check_pairs<256, 128>(ScheduleKind::Batched, Pairing::PairN, 1000, 1000, 2, {}, 7);  // odd n-blocks
  std::vector<int32_t> ends;
  int64_t row = 0;
  for (int c : {0, 1, 130, 0, 300, 128, 0, 900}) {
    row = align_up64(row, kGroupBlockM) + c;
    ends.push_back(int32_t(row));
  }
  check_pairs<128, 128>(ScheduleKind::Grouped, Pairing::PairN, 0, 4096, int(ends.size()), ends, 66);
  check_pairs<128, 128>(ScheduleKind::Grouped, Pairing::PairN, 0, 384, int(ends.size()), ends, 5);  // odd n-blocks
}

TEST(Fp8GemmLayout, GroupedRowBoundHoldsForTheWorstRouting) {
  // Every non-empty expert with one row (the most padding), and everything on one expert.
  for (int64_t E : {1, 8, 256}) {
    for (int64_t pairs : {int64_t(1), E, 3 * E, int64_t(32768)}) {
      int64_t rows = 0;
      const int64_t nonempty = std::min(pairs, E);
      for (int64_t e = 0; e < nonempty; ++e) {
        const int64_t c = e == 0 ? pairs - (nonempty - 1) : 1;
        rows += align_up64(c, kGroupBlockM);
      }
      EXPECT_LE(rows, grouped_max_rows(pairs, E)) << "E " << E << " pairs " << pairs;
      EXPECT_EQ(grouped_max_rows(pairs, E) % kGroupBlockM, 0);
    }
  }
}

TEST(Fp8GemmLayout, TileShapeChoiceIsTheCheapest) {
  for (auto [M, N] : {std::pair<int64_t, int64_t>{4096, 2112}, {4096, 24576}, {4096, 7168}, {4096, 4096}, {4096, 36864},
                      {32768, 7168}, {64, 512}, {256, 512}}) {
    const TileShape s = choose_dense_shape(M, N, 1, 132);
    const double c = tile_shape_cost(s, M, N, 1, 132);
    for (const TileShape& o : kDenseShapes) {
      if (o.bm == 64 && M > 64) continue;
      EXPECT_LE(c, tile_shape_cost(o, M, N, 1, 132) * 1.001) << M << "x" << N << ": " << s.bm << "x" << s.bn;
    }
  }
  // 2112 columns: a 136-wide tile covers them in 16 columns of tiles, 32 x 16 = 512 tiles on 132 SMs
  // (3.9 waves) where 128-wide tiles leave a last wave of 16 tiles.
  const TileShape s = choose_dense_shape(4096, 2112, 1, 132);
  EXPECT_NE(s.bn, 128) << "wave quantization should steer away from 128-wide tiles here";
}

}  // namespace
}  // namespace dsserve::cuda::sm90
