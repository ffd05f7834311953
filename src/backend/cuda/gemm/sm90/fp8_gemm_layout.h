// Index maps of the sm90 block-FP8 GEMM (fp8_gemm_sm90.cuh), shared by the kernel and the host
// tests that replay them (tests/backend/fp8_gemm_layout_test.cpp): the 128-byte swizzle the copy
// engine writes, the wgmma shared-memory matrix descriptor and the address it makes the tensor
// cores read, the m64nNk32 accumulator fragment, which weight-scale block each n8 chunk of a tile
// uses, the tile order of the persistent scheduler (dense, batched and expert-grouped), and the
// choice of tile shape. Plain C++ (no CUDA types), so the CPU build compiles and tests it.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DS_SM90_HD __host__ __device__ __forceinline__
#else
#define DS_SM90_HD inline
#endif

namespace dsserve::cuda::sm90 {

constexpr int kBlockK = 128;      // K per pipeline stage = one scale block = one 128-byte swizzled row
constexpr int kWgmmaM = 64;       // rows of one wgmma
constexpr int kWgmmaK = 32;       // K of one e4m3 wgmma (32 bytes of the 128-byte row)
constexpr int kGroupBlockM = 128; // expert segments start on multiples of this many rows

DS_SM90_HD constexpr int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }
DS_SM90_HD constexpr int64_t align_up64(int64_t a, int64_t b) { return ceil_div64(a, b) * b; }

// SWIZZLE_128B as the copy engine writes a box of 128-byte rows into a 1024-byte aligned buffer:
// the 16-byte chunk c of row r lands at chunk c ^ (r % 8) of that row.
DS_SM90_HD constexpr uint32_t swizzle128_offset(uint32_t row, uint32_t byte) {
  return row * 128u + ((((byte >> 4) ^ (row & 7u)) & 7u) << 4) + (byte & 15u);
}

// wgmma matrix descriptor of a K-major operand in 128-byte swizzled rows: start address >> 4 in
// bits 0-13, leading byte offset >> 4 in bits 16-29 (unused for swizzled K-major: 0), stride
// byte offset >> 4 in bits 32-45 (1024: the next 8-row group), base offset 0 in bits 49-51 (the
// buffers are 1024-byte aligned), swizzle mode in bits 62-63 (1 = 128B).
constexpr uint32_t kDescStrideBytes = 1024;
DS_SM90_HD constexpr uint64_t make_smem_desc(uint32_t smem_addr) {
  return uint64_t((smem_addr & 0x3FFFFu) >> 4) | (uint64_t(0) << 16) | (uint64_t(kDescStrideBytes >> 4) << 32) |
         (uint64_t(1) << 62);
}
// The descriptor of the same operand k32 step kk further along K: 32 bytes further in the row.
DS_SM90_HD constexpr uint64_t desc_advance_k(uint64_t desc, uint32_t kk) { return desc + uint64_t((kk * 32u) >> 4); }

// The shared-memory byte address the tensor cores read for element (row, k) of a k32 slice
// (k in [0, 32)) described by desc: the canonical K-major layout (8-row groups SBO apart, rows
// 128 bytes apart inside a group, bytes contiguous along K) with the 128B swizzle applied to the
// address (bits 4-6 ^= bits 7-9). The host tests check that this reads what swizzle128_offset
// placed for logical byte kk * 32 + k of that row.
DS_SM90_HD constexpr uint32_t desc_read_address(uint64_t desc, uint32_t row, uint32_t k) {
  const uint32_t start = uint32_t(desc & 0x3FFFu) << 4;
  const uint32_t sbo = uint32_t((desc >> 32) & 0x3FFFu) << 4;
  const uint32_t linear = start + (row / 8u) * sbo + (row % 8u) * 128u + k;
  return linear ^ (((linear >> 7) & 7u) << 4);
}

// The m64nNk32 float32 accumulator of a warpgroup: thread tid (0..127) holds N / 2 values; value i
// is row 16 * (tid / 32) + g (+ 8 for i % 4 >= 2), column 8 * (i / 4) + 2 t + (i % 2), with
// g = lane / 4 and t = lane % 4 (n8 chunk j = i / 4 holds values 4j .. 4j + 3).
struct FragCoord {
  int row, col;
};
DS_SM90_HD constexpr FragCoord accum_coord(int tid, int i) {
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  return {16 * warp + g + ((i >> 1) & 1) * 8, 8 * (i >> 2) + 2 * t + (i & 1)};
}

// A tile of BN columns starting at n0 meets at most two 128-column weight-scale blocks when
// BN - gcd(BN, 128) <= 128 (checked at compile time). Its n8 chunks j < former_chunks use the
// block of n0, the others the next one.
DS_SM90_HD constexpr int former_chunks(int64_t n0, int bn) {
  const int64_t room = 128 - n0 % 128;
  return int((room < bn ? room : bn) / 8);
}
constexpr int gcd_int(int a, int b) { return b == 0 ? a : gcd_int(b, a % b); }
constexpr bool tile_meets_two_scale_blocks_at_most(int bn) { return bn - gcd_int(bn, 128) <= 128; }

// Expert-grouped rows: expert e owns rows [group_start(e), group_end[e]) of A and D, where its
// segment starts at the previous expert's end rounded up to kGroupBlockM. An expert without rows
// has group_end[e] == group_start(e).
DS_SM90_HD constexpr int64_t group_start(const int32_t* group_end, int e) {
  return e == 0 ? 0 : align_up64(group_end[e - 1], kGroupBlockM);
}
// Rows that any routing of `pairs` pairs over `experts` experts needs in that layout: each
// non-empty expert pads its segment to a multiple of kGroupBlockM, and the total is rounded up
// to one too (the A-scale rows' stride).
DS_SM90_HD constexpr int64_t grouped_max_rows(int64_t pairs, int64_t experts) {
  return align_up64(pairs + (kGroupBlockM - 1) * (pairs < experts ? pairs : experts), kGroupBlockM);
}

// One output tile: rows [row0, min(row0 + BM, row_end)) of the batch / expert `group`, columns
// [n0, n0 + BN).
struct Tile {
  int group;
  int64_t row0, row_end;  // global rows of A and D (grouped: inside the expert's segment)
  int64_t n0;
  int64_t m_block, n_block;
  bool store;  // false for the idle member of a CTA pair (it computes its partner's last block again)
};

enum class ScheduleKind { Batched, Grouped };

// CTA pairs (a cluster of two sharing one operand through multicast copies): the two CTAs take
// tiles of the same n-block and neighbouring m-blocks (PairM: B is shared) or of the same m-block
// and neighbouring n-blocks (PairN: A is shared), in lockstep. Where the dimension has an odd
// number of blocks, the last pair's second member repeats the last block without storing it.
enum class Pairing { None, PairM, PairN };

// The persistent grid's tile order. CTA b takes tiles b, b + grid, b + 2 grid, ... of one
// sequence, which every thread of the CTA walks the same way (the producer and the consumers
// keep separate copies). Batched: per batch (1 for a plain GEMM), groups of kGroupM m-blocks, and
// inside a group the m-block varies fastest, so the CTAs running at one time share a few weight
// tiles (read once from memory, then from L2) over a group of activation rows. Grouped: expert by
// expert, m-block fastest inside an expert (the CTAs of one weight tile run together).
template <int BM, int BN>
struct TileScheduler {
  static constexpr int kGroupM = 16;
  ScheduleKind kind;
  int64_t M, N;        // batched: rows per batch
  int batch;           // batched: batch count; grouped: experts
  const int32_t* group_end;  // grouped: [experts]
  int64_t n_blocks;
  int64_t next, stride;  // positions in the sequence of tiles (of pairs, when paired)
  Pairing pairing;
  int rank;  // paired: this CTA's member of the pair (0 or 1)
  // Grouped walk: the expert of the current position and the first tile index of that expert.
  int cur_group = 0;
  int64_t cur_group_first_tile = 0;

  DS_SM90_HD TileScheduler(ScheduleKind k, int64_t m, int64_t n, int b, const int32_t* ends, int64_t first,
                           int64_t grid, Pairing pair = Pairing::None, int pair_rank = 0)
      : kind(k), M(m), N(n), batch(b), group_end(ends), n_blocks(ceil_div64(n, BN)), next(first), stride(grid),
        pairing(pair), rank(pair_rank) {}

  // Blocks along M and N of the sequence's units (pairs count as one unit along their dimension).
  DS_SM90_HD int64_t units(int64_t blocks, bool paired) const { return paired ? ceil_div64(blocks, 2) : blocks; }
  DS_SM90_HD int64_t batched_tiles() const { return ceil_div64(M, BM) * n_blocks * batch; }

  // Places this CTA's member of unit (mu, nu) into tile; clamps an idle member.
  DS_SM90_HD void member(Tile& tile, int64_t mu, int64_t nu, int64_t m_blocks) const {
    int64_t m = pairing == Pairing::PairM ? 2 * mu + rank : mu;
    int64_t n = pairing == Pairing::PairN ? 2 * nu + rank : nu;
    tile.store = m < m_blocks && n < n_blocks;
    tile.m_block = m < m_blocks ? m : m_blocks - 1;
    tile.n_block = n < n_blocks ? n : n_blocks - 1;
    tile.n0 = tile.n_block * BN;
  }

  // The next tile of this CTA, or false when none is left.
  DS_SM90_HD bool next_tile(Tile& tile) {
    const int64_t t = next;
    next += stride;
    const int64_t n_units = units(n_blocks, pairing == Pairing::PairN);
    if (kind == ScheduleKind::Batched) {
      const int64_t m_blocks = ceil_div64(M, BM), m_units = units(m_blocks, pairing == Pairing::PairM);
      const int64_t per_batch = m_units * n_units;
      if (t >= per_batch * batch) return false;
      const int b = int(t / per_batch);
      const int64_t in_batch = t % per_batch, group_tiles = int64_t(kGroupM) * n_units;
      const int64_t first_m = in_batch / group_tiles * kGroupM, in_group = in_batch % group_tiles;
      const int64_t group_m = m_units - first_m < kGroupM ? m_units - first_m : kGroupM;
      tile.group = b;
      member(tile, first_m + in_group % group_m, in_group / group_m, m_blocks);
      tile.row0 = tile.m_block * BM;
      tile.row_end = M;
      return true;
    }
    while (cur_group < batch) {
      const int64_t start = group_start(group_end, cur_group), end = group_end[cur_group];
      const int64_t m_blocks = end > start ? ceil_div64(end - start, BM) : 0;
      const int64_t m_units = units(m_blocks, pairing == Pairing::PairM);
      const int64_t tiles = m_units * n_units;
      if (t < cur_group_first_tile + tiles) {
        const int64_t in_group = t - cur_group_first_tile;
        tile.group = cur_group;
        member(tile, in_group % m_units, in_group / m_units, m_blocks);
        tile.row0 = start + tile.m_block * BM;
        tile.row_end = end;
        return true;
      }
      cur_group_first_tile += tiles;
      ++cur_group;
    }
    return false;
  }
};

// Tile shapes the launcher instantiates, and the choice among them for a problem: fewest
// modelled cycles, counting whole waves of the persistent grid (a partly filled last wave costs a
// whole one) and the bytes each tile moves from L2 per unit of work (smaller tiles re-read more).
struct TileShape {
  int bm, bn;
};
constexpr TileShape kDenseShapes[] = {{128, 128}, {128, 112}, {128, 136}, {128, 144},
                                      {128, 160}, {256, 128}, {64, 128}};
constexpr int kNumDenseShapes = int(sizeof(kDenseShapes) / sizeof(kDenseShapes[0]));
constexpr TileShape kGroupedShape{128, 128};
// Shapes also built as CTA pairs (the others' pair variants would spill registers).
inline bool pairs_instantiated(TileShape s) {
  return s.bm == 128 && (s.bn == 128 || s.bn == 136);
}

// Shapes also built with pipelined consumers (two accumulator sets per warpgroup: BN <= 128).
inline bool pipelined_instantiated(TileShape s, bool grouped) {
  return s.bm == 128 && (s.bn == 128 || (!grouped && s.bn == 112));
}

// Modelled cost of one shape (arbitrary units, lower is better).
inline double tile_shape_cost(TileShape s, int64_t M, int64_t N, int64_t batch, int num_sms) {
  const int64_t tiles = ceil_div64(M, s.bm) * ceil_div64(N, s.bn) * batch;
  const int64_t waves = ceil_div64(tiles, num_sms);
  // Per tile: tensor work grows with bm * bn, operand bytes with bm + bn; the tensor cores are
  // the limit unless a tile's operands are small against its work (4096 bytes of A + B per k32
  // of 64 x 64 work is the balance point of L2 against the tensor cores on H100/H200).
  const double work = double(s.bm) * s.bn, bytes = double(s.bm + s.bn);
  const double l2_per_work = bytes / work;  // 1/64 for 128x128
  const double slowdown = l2_per_work > 1.0 / 64 ? l2_per_work * 64 : 1.0;
  return double(waves) * work * slowdown;
}

inline TileShape choose_dense_shape(int64_t M, int64_t N, int64_t batch, int num_sms) {
  TileShape best = kDenseShapes[0];
  double best_cost = tile_shape_cost(best, M, N, batch, num_sms);
  for (int i = 1; i < kNumDenseShapes; ++i) {
    const TileShape s = kDenseShapes[i];
    if (s.bm == 64 && M > 64) continue;  // one math warpgroup: only for small row counts
    const double c = tile_shape_cost(s, M, N, batch, num_sms);
    if (c < best_cost * 0.999) best = s, best_cost = c;
  }
  return best;
}

}  // namespace dsserve::cuda::sm90
