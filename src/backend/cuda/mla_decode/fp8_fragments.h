// Index maps of the mma.sync decode kernel reading an FP8 cache stage in registers (plain constexpr
// C++: the kernel uses them, and tests/backend/mla_fp8_fragments_test.cpp replays them on the host
// against ldmatrix and mma.m16n8k16 as the PTX ISA defines them): where a 16-byte chunk of a key row
// lives in a stage, which rows and chunks each lane addresses for S (keys, all latent columns) and
// P V (values, the first kv_rank columns), the latent column that k row j of a k-step of S stands
// for (Q's columns are reordered to match), and the value column of column n of a P V n-tile.
#pragma once

#include <cstdint>

namespace dsserve::cuda::mla_fp8 {

// Byte offset of chunk `chunk` (16 FP8 columns) of key row `row` in a stage of `row_bytes`-byte rows
// (16 x (4 mod 8) bytes): the chunk index is XORed with (row / 2) % 4 inside its group of 4, so the
// 8 rows of an ldmatrix phase (rows 8 i .. 8 i + 7, one chunk) fall in 8 different bank groups.
constexpr uint32_t stage_offset(int row, int chunk, int row_bytes) {
  return uint32_t(row * row_bytes + ((chunk ^ ((row >> 1) & 3)) << 4));
}

// S, the ldmatrix of k-steps 2 kp and 2 kp + 1 (one chunk each) for the `key_tiles` 8-key n-tiles of
// warp `wig`: matrix lane / 8 is n-tile (lane / 16) % key_tiles, k-step 2 kp + (lane / 8) % 2.
constexpr int s_row(int lane, int wig, int key_tiles) {
  return wig * key_tiles * 8 + ((lane >> 4) % key_tiles) * 8 + (lane & 7);
}
constexpr int s_chunk(int lane, int kp) { return 2 * kp + ((lane >> 3) & 1); }

// Lane (g, t4) gets FP8 columns 4 t4 .. 4 t4 + 3 of key g of a k-step; bytes 0 and 2 are B's k rows
// 2 t4 and 2 t4 + 1 (b0), bytes 1 and 3 k rows 2 t4 + 8 and 2 t4 + 9 (b1). So k row j of the k-step
// is latent column s_column(j): the even columns, then the odd ones (Q is reordered the same way).
constexpr int s_column(int j) { return j < 8 ? 2 * j : 2 * (j - 8) + 1; }

// P V, the ldmatrix.trans of keys 16 kk .. 16 kk + 15 and `per` / 2 chunks (per n-tiles) of load jp
// of warp `wig` (`col_tiles` n-tiles): matrix lane / 8 is keys 8 ((lane / 8) % 2) .., chunk
// + lane / 16.
constexpr int v_row(int lane, int kk) { return 16 * kk + ((lane >> 3) & 1) * 8 + (lane & 7); }
constexpr int v_chunk(int lane, int wig, int col_tiles, int per, int jp) {
  return wig * col_tiles / 2 + per / 2 * jp + (lane >> 4);
}

// Lane (g, t4) gets columns 2 g and 2 g + 1 of keys 2 t4, 2 t4 + 1: bytes 0 and 2 feed an n-tile of
// the chunk's even columns, bytes 1 and 3 one of its odd columns. Column n of the warp's n-tile j
// is value column pv_column(j, n) past the warp's first (8 col_tiles wig); so n-tiles 2 q and
// 2 q + 1 give lane t4 four contiguous output columns, 16 q + 4 t4 .. + 3.
constexpr int pv_column(int j, int n) { return 16 * (j / 2) + 2 * n + j % 2; }

}  // namespace dsserve::cuda::mla_fp8
