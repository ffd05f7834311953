// Where each weight and activation element of the quantized products sits, as pure index maps
// shared by the device kernels, the AWQ repacking kernel and the host tests that replay them
// (tests/backend/quant_layout_test.cpp): no CUDA types here.
//
// mma.sync fragments (PTX ISA, lane = 4 g + t):
// - m16n8k16 BF16 (W4A16): A (16 x 16, row-major) a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1],
//   a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, 2t+9]; B (16 x 8) b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g];
//   C c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1].
// - m16n8k32 S8 (W8A8): a0 = A[g][4t..4t+3], a1 = A[g+8][4t..4t+3], a2 = A[g][16+4t..], a3 = A[g+8][16+4t..];
//   b0 = B[4t..4t+3][g], b1 = B[16+4t..16+4t+3][g]; C as above (int32).
// Weights are the A operand (rows = output features), activations the B operand (columns = tokens).
// Inside each K block the fragment positions are mapped to logical k so that a lane's operands are
// contiguous in memory (16-byte loads that, over the 4 lanes of a row, cover whole 32-byte
// sectors); weights and activations use the same map, so every dot product is unchanged.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DS_QUANT_HD __host__ __device__ __forceinline__
#else
#define DS_QUANT_HD inline
#endif

namespace dsserve::cuda::quant {

// ---- W4A16: AWQ weights repacked for m16n8k16 ----
// A unit is 16 weight rows x 64 k: 512 bytes, 16 per lane (4 words, one per k16 step s).
constexpr int kW4UnitK = 64, kW4TileRows = 16, kW4UnitBytes = 512;

// Logical k (within the unit) of the first of the 4 consecutive k lane (g, t) holds in step s:
// a0 / b0 take k0, k0 + 1 and a2 / b1 take k0 + 2, k0 + 3.
DS_QUANT_HD int w4_step_k0(int s, int t) { return 32 * (s >> 1) + 8 * t + 4 * (s & 1); }

// Nibble n (bits 4n..4n+3) of word s of lane (g, t) holds W[row][k] with row = g + 8 (n & 1) and
// k = w4_step_k0(s, t) + 2 ((n >> 1) & 1) + (n >> 2): so (word >> 4j) & 0x000F000F, j = 0..3, puts
// the pairs of a0, a1, a2, a3 in the low and high halves.
DS_QUANT_HD int w4_nibble_row(int n, int g) { return g + 8 * (n & 1); }
DS_QUANT_HD int w4_nibble_k(int n, int s, int t) { return w4_step_k0(s, t) + 2 * ((n >> 1) & 1) + (n >> 2); }

// Word index of (tile, unit, lane, step) in the repacked weight [rows / 16][K / 64][32][4].
DS_QUANT_HD int64_t w4_word_index(int64_t tile, int64_t unit, int lane, int s, int64_t units_per_row) {
  return ((tile * units_per_row + unit) * 32 + lane) * 4 + s;
}

// Activations (BF16 [T, K], rows of tokens): for unit u, lane (g, t) loads two 16-byte vectors of
// token row g: elements 64 u + 8 t .. + 7 (vector 0) and 64 u + 32 + 8 t .. + 7 (vector 1). Step s
// takes b0 = word 2 (s & 1) and b1 = word 2 (s & 1) + 1 of vector s >> 1.
DS_QUANT_HD int w4_x_vector_k(int v, int t) { return 32 * v + 8 * t; }

// Scale and zero of (group, row): one word, f16 scale bits in bits 0..15 and the 4-bit zero in
// bits 16..19 ([K / G][rows], row-major by group).
DS_QUANT_HD uint32_t w4_pack_scale_zero(uint16_t scale_f16_bits, int zero) {
  return uint32_t(scale_f16_bits) | (uint32_t(zero & 0xF) << 16);
}

// ---- W8A8: int8 weights [rows, K] as stored, activations int8 [T, K] ----
// A chunk is 128 k (one scale block). Lane (g, t) holds, for each of its rows (and token rows),
// 32 k in two 16-byte vectors: bytes 16 t .. 16 t + 15 (vector 0) and 64 + 16 t .. (vector 1).
constexpr int kI8ChunkK = 128;
DS_QUANT_HD int i8_vector_k(int v, int t) { return 64 * v + 16 * t; }
// k32 step s (0..3) takes a0 / b0 = word 2 (s & 1) and a2 / b1 = word 2 (s & 1) + 1 of vector s >> 1.
// Logical k of byte i (0..3) of the word holding fragment positions 4t + i (half 0) or 16 + 4t + i (half 1):
DS_QUANT_HD int i8_step_k(int s, int half, int i, int t) { return i8_vector_k(s >> 1, t) + 4 * (2 * (s & 1) + half) + i; }

// ---- Shared memory of the tiled (prefill) kernels: rows of 128 bytes, 16-byte chunks swizzled ----
// Chunk c of row r lives at chunk c ^ 4 (r & 1): the two rows of each 8-lane phase of a 16-byte
// load (chunks t and 4 + t of rows g) then fall in different banks.
DS_QUANT_HD int swizzle_chunk(int row, int chunk) { return chunk ^ ((row & 1) << 2); }

}  // namespace dsserve::cuda::quant
