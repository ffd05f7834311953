// The index maps of the mma.sync decode kernel reading an FP8 cache stage in registers
// (backend/cuda/mla_decode/fp8_fragments.h), replayed on the host: a stage laid out by stage_offset,
// ldmatrix (plain and .trans) of its bytes as 8 x 8 tiles of byte pairs as the PTX ISA defines it, and
// the B fragments of mma.m16n8k16 that each lane must then hold: for S, key g of the lane's n-tile at
// the latent columns s_column(2 t4 ..) of the k-step; for P V, keys 2 t4 (+1, +8, +9) at value column
// pv_column(j, g). Every ldmatrix phase must be free of bank conflicts, and the P V n-tiles of the
// warps must cover every value column once. V3's shape (576 / 512) and the tiny models' (160 / 128),
// narrow (8 warps x 1 n-tile of keys) and wide (4 warps x 2) blocks.
#include <gtest/gtest.h>

#include <array>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/mla_decode/fp8_fragments.h"

namespace dsserve::test {
namespace {

using namespace dsserve::cuda::mla_fp8;

constexpr int kKeys = 64;  // keys per tile

struct Byte {
  int key = -1, col = -1;  // what the stage holds there (-1: nothing written)
  bool operator==(const Byte& o) const { return key == o.key && col == o.col; }
};

int stage_row_bytes(int latent) { return (latent / 16 + 3) / 4 * 4 * 16; }

// A stage of 64 keys: every byte tagged with the (key, latent column) the copies put there.
std::vector<Byte> make_stage(int latent) {
  const int rb = stage_row_bytes(latent);
  std::vector<Byte> s(size_t(kKeys * rb));
  for (int r = 0; r < kKeys; ++r)
    for (int c = 0; c < latent / 16; ++c) {
      const uint32_t off = stage_offset(r, c, rb);
      EXPECT_EQ(off % 16, 0u);
      EXPECT_LE(off + 16, uint32_t(r + 1) * uint32_t(rb)) << "chunk " << c << " of row " << r << " leaves its row";
      for (int b = 0; b < 16; ++b) {
        EXPECT_EQ(s[off + b].key, -1) << "two chunks at byte " << off + b;
        s[off + b] = {r, 16 * c + b};
      }
    }
  return s;
}

// ldmatrix .x{n} .b16 (.trans): lane l's register i as its 4 bytes, byte 0 lowest. Lanes 0 .. 8 n - 1
// give the row addresses (matrix l / 8, row l % 8); each matrix's 8 rows must hit 8 bank groups.
using Regs = std::vector<std::array<std::array<Byte, 4>, 32>>;
Regs ldmatrix(const std::vector<Byte>& s, const std::array<uint32_t, 32>& addr, int n, bool trans,
              const std::string& what) {
  Regs regs(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    std::set<uint32_t> groups;
    for (int r = 0; r < 8; ++r) {
      EXPECT_EQ(addr[size_t(8 * i + r)] % 16, 0u) << what;
      groups.insert(addr[size_t(8 * i + r)] / 16 % 8);
    }
    EXPECT_EQ(groups.size(), 8u) << "bank conflict in matrix " << i << " of " << what;
    const auto at = [&](int row, int byte) { return s[addr[size_t(8 * i + row)] + uint32_t(byte)]; };
    for (int l = 0; l < 32; ++l) {
      const int g = l >> 2, t = l & 3;
      auto& reg = regs[size_t(i)][size_t(l)];
      if (!trans) {
        for (int b = 0; b < 4; ++b) reg[size_t(b)] = at(g, 4 * t + b);
      } else {  // elements (row 2 t, column g) and (row 2 t + 1, column g) of the 8 x 8 b16 tile
        reg = {at(2 * t, 2 * g), at(2 * t, 2 * g + 1), at(2 * t + 1, 2 * g), at(2 * t + 1, 2 * g + 1)};
      }
    }
  }
  return regs;
}

struct Block {
  int latent, kv_rank;
  bool wide;
  int group_warps() const { return wide ? 4 : 8; }
  int key_tiles() const { return kKeys / 8 / group_warps(); }
  int col_tiles() const { return kv_rank / 8 / group_warps(); }
  std::string name() const {
    return std::to_string(latent) + "/" + std::to_string(kv_rank) + (wide ? " wide" : " narrow");
  }
};

const Block kBlocks[] = {{576, 512, false}, {576, 512, true}, {160, 128, false}, {160, 128, true}};

TEST(MlaFp8Fragments, SColumnOrderIsAPermutationOfTheKStep) {
  std::set<int> cols;
  for (int j = 0; j < 16; ++j) cols.insert(s_column(j));
  EXPECT_EQ(cols.size(), 16u);
  EXPECT_EQ(*cols.begin(), 0);
  EXPECT_EQ(*cols.rbegin(), 15);
}

TEST(MlaFp8Fragments, SReadsTheKeyFragmentsOfQsColumnOrder) {
  for (const Block& bk : kBlocks) {
    const std::vector<Byte> s = make_stage(bk.latent);
    const int rb = stage_row_bytes(bk.latent), kt = bk.key_tiles();
    for (int wig = 0; wig < bk.group_warps(); ++wig)
      for (int kp = 0; kp < bk.latent / 32; ++kp) {
        std::array<uint32_t, 32> addr{};
        for (int l = 0; l < 32; ++l) addr[size_t(l)] = stage_offset(s_row(l, wig, kt), s_chunk(l, kp), rb);
        const std::string what = bk.name() + " S warp " + std::to_string(wig) + " kp " + std::to_string(kp);
        const Regs regs = ldmatrix(s, addr, 2 * kt, false, what);
        int bad = 0;
        for (int nt = 0; nt < kt; ++nt)
          for (int h = 0; h < 2; ++h)
            for (int l = 0; l < 32; ++l) {
              const int g = l >> 2, t4 = l & 3, key = wig * kt * 8 + nt * 8 + g, k0 = 16 * (2 * kp + h);
              const auto& reg = regs[size_t(2 * nt + h)][size_t(l)];
              // b0 = bytes 0, 2: k rows 2 t4, 2 t4 + 1; b1 = bytes 1, 3: k rows 2 t4 + 8, 2 t4 + 9.
              bad += !(reg[0] == Byte{key, k0 + s_column(2 * t4)});
              bad += !(reg[2] == Byte{key, k0 + s_column(2 * t4 + 1)});
              bad += !(reg[1] == Byte{key, k0 + s_column(2 * t4 + 8)});
              bad += !(reg[3] == Byte{key, k0 + s_column(2 * t4 + 9)});
            }
        EXPECT_EQ(bad, 0) << what;
      }
  }
}

TEST(MlaFp8Fragments, PVReadsTheValueFragmentsOfEveryColumnOnce) {
  for (const Block& bk : kBlocks) {
    const std::vector<Byte> s = make_stage(bk.latent);
    const int rb = stage_row_bytes(bk.latent), ct = bk.col_tiles(), per = ct % 4 == 0 ? 4 : 2;
    ASSERT_EQ(ct % per, 0) << bk.name();
    std::vector<int> uses(size_t(bk.kv_rank), 0);  // over the warps' n-tiles and columns n
    for (int wig = 0; wig < bk.group_warps(); ++wig)
      for (int j = 0; j < ct; ++j)
        for (int n = 0; n < 8; ++n) {
          const int col = wig * ct * 8 + pv_column(j, n);
          ASSERT_TRUE(col >= 0 && col < bk.kv_rank) << bk.name() << " column " << col;
          ++uses[size_t(col)];
          if (j % 2 == 0) {  // the epilogue stores n-tiles 2 q, 2 q + 1 and columns n, n + 1 as pairs
            EXPECT_EQ(pv_column(j + 1, n), pv_column(j, n) + 1);
            if (n % 2 == 0) {
              EXPECT_EQ(pv_column(j, n + 1), pv_column(j, n) + 2);
            }
          }
        }
    for (int c = 0; c < bk.kv_rank; ++c) EXPECT_EQ(uses[size_t(c)], 1) << bk.name() << " value column " << c;
    for (int wig = 0; wig < bk.group_warps(); ++wig)
      for (int kk = 0; kk < kKeys / 16; ++kk)
        for (int jp = 0; jp < ct / per; ++jp) {
          std::array<uint32_t, 32> addr{};
          for (int l = 0; l < 32; ++l) addr[size_t(l)] = stage_offset(v_row(l, kk), v_chunk(l, wig, ct, per, jp), rb);
          const std::string what = bk.name() + " P V warp " + std::to_string(wig) + " kk " + std::to_string(kk) +
                                   " load " + std::to_string(jp);
          const Regs regs = ldmatrix(s, addr, per, true, what);
          int bad = 0;
          for (int ci = 0; ci < per / 2; ++ci)
            for (int par = 0; par < 2; ++par)
              for (int l = 0; l < 32; ++l) {
                const int g = l >> 2, t4 = l & 3, j = per * jp + 2 * ci + par;
                const int col = wig * ct * 8 + pv_column(j, g), key = 16 * kk + 2 * t4;
                const auto& lo = regs[size_t(2 * ci)][size_t(l)];      // keys 0 .. 7 of the step: b0
                const auto& hi = regs[size_t(2 * ci + 1)][size_t(l)];  // keys 8 .. 15: b1
                // even n-tile: bytes 0 and 2; odd: bytes 1 and 3 (k rows 2 t4, 2 t4 + 1 of column g)
                bad += !(lo[size_t(par)] == Byte{key, col}) + !(lo[size_t(2 + par)] == Byte{key + 1, col});
                bad += !(hi[size_t(par)] == Byte{key + 8, col}) + !(hi[size_t(2 + par)] == Byte{key + 9, col});
              }
          EXPECT_EQ(bad, 0) << what;
        }
  }
}

}  // namespace
}  // namespace dsserve::test
