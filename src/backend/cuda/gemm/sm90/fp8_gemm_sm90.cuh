// The sm90 block-FP8 GEMM kernel (see fp8_gemm_sm90.h and README.md): a persistent grid of one
// CTA per SM; one producer warpgroup whose single thread issues bulk tensor copies (A, A's scales
// and B tiles of 128 K-values, 128-byte swizzled) into a ring of shared-memory stages guarded by
// mbarriers; one or two consumer warpgroups issuing FP8 wgmma from those stages into float32
// accumulators, promoted once per 128-wide K block by the A-row and B-block scales into the running
// sums; BF16 or float32 stores straight from registers. Index maps: fp8_gemm_layout.h.
// kCluster = 2: CTA pairs (thread-block clusters of two) share the A or the B tile: the first CTA
// of the pair copies it once into both CTAs' shared memory (multicast), and a stage is reused only
// when the consumers of both CTAs have released it.
#pragma once
#include <cooperative_groups.h>
#include <cuda.h>
#include <cuda_bf16.h>

#include <cuda/ptx>

#include "backend/cuda/gemm/sm90/fp8_gemm_layout.h"
#include "backend/cuda/gemm/sm90/wgmma_fp8.cuh"

namespace dsserve::cuda::sm90 {

// What the kernel needs besides the tensor maps (plain values; pointers are device memory).
struct KernelArgs {
  void* d;  // [batch][M, N] rows strided by ldd
  int64_t ldd, d_batch_stride;
  int64_t M, N;
  int kblocks, batch;
  int d_f32;
  int pairing;  // Pairing (kCluster = 2)
  const int32_t* group_end;  // grouped: [batch]
  const int32_t* d_row;      // grouped: [M] or null
};

constexpr uint32_t kSmemLimitBytes = 232448;  // per block on sm_90 (227 KiB)
constexpr int kMaxKBlocks = 256;              // the launcher takes K <= 32768

template <int BM, int BN, bool kTmaStore = false>
struct KernelConfig {
  static_assert(BM == 64 || BM == 128 || BM == 256, "BM is one or two warpgroups of one or two m64 waves");
  static_assert(BN % 8 == 0 && BN >= 16 && BN <= 256, "wgmma e4m3 takes N in multiples of 8 up to 256");
  static_assert(tile_meets_two_scale_blocks_at_most(BN), "a tile may meet at most two 128-column scale blocks");
  static constexpr int kMathWarpgroups = BM == 64 ? 1 : 2;
  static constexpr int kWaves = BM / (kWgmmaM * kMathWarpgroups);  // m64 waves per consumer warpgroup
  static constexpr int kMathThreads = 128 * kMathWarpgroups;
  static constexpr int kThreads = kMathThreads + 128;
  static constexpr int kAccum = BN / 2;  // float32 accumulators of one m64nBN wgmma per thread
  static constexpr bool kUniformScale = 128 % BN == 0;  // every tile inside one weight-scale block
  static_assert(kAccum * (kWaves + 1) <= 200, "accumulators must leave room in 232 registers");
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = kMathWarpgroups == 1 ? 248 : 232;
  static constexpr uint32_t kABytes = BM * kBlockK, kBBytes = BN * kBlockK, kSaBytes = BM * 4;
  // The weight scales of a stage: K blocks kb & ~3 .. + 3 of the tile's two 128-row blocks (the
  // second is read past N as zeros), a 4 x 2 float box; its slot is 128 bytes for the copy engine.
  static constexpr uint32_t kSbBytes = 4 * 2 * 4, kSbSlot = 128;
  static constexpr uint32_t kStageBytes = kABytes + kBBytes + kSaBytes + kSbBytes;  // bytes copied per stage
  // kTmaStore: the BF16 output tile is staged in shared memory (64-column atoms of BM rows x 128
  // bytes, 128B-swizzled) and written by bulk tensor stores.
  static_assert(!kTmaStore || BN % 64 == 0, "staged stores take 64-column atoms");
  static constexpr uint32_t kDBytes = kTmaStore ? BM * BN * 2 : 0;
  static constexpr uint32_t kStageSmem = kABytes + kBBytes + kSaBytes + kSbSlot;  // shared memory per stage
  static constexpr uint32_t kFixedBytes = 1024 + kDBytes + 2 * 16 * 8;
  static constexpr int kStages = int((kSmemLimitBytes - kFixedBytes) / kStageSmem) > 8
                                     ? 8
                                     : int((kSmemLimitBytes - kFixedBytes) / kStageSmem);
  static_assert(kStages >= 3, "at least three stages in flight");
  static constexpr uint32_t kSmemBytes = kFixedBytes + kStages * kStageSmem;
  static_assert(kABytes % 1024 == 0 && kBBytes % 1024 == 0, "swizzled stages stay 1024-byte aligned");
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// Waits for the barrier's phase of the given parity. A wait far beyond any legitimate one (about
// ten seconds of SM clocks) traps, so a broken pipeline fails the launch instead of hanging the
// GPU (no printf here: a call inside the consumers' loop would serialise their wgmma).
__device__ __forceinline__ void wait_parity(uint64_t* bar, uint32_t parity) {
  if (::cuda::ptx::mbarrier_try_wait_parity(bar, parity)) return;
  const long long start = clock64();
  while (!::cuda::ptx::mbarrier_try_wait_parity(bar, parity))
    if (clock64() - start > (1ll << 34)) asm volatile("trap;\n");
}

__device__ __forceinline__ void math_barrier(int threads) { asm volatile("bar.sync 1, %0;\n" ::"r"(threads) : "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// Keeps the compiler from moving register accesses across the asynchronous wgmma region.
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

template <int BM, int BN, ScheduleKind kKind, int kCluster, bool kTmaStore>
__global__ void __launch_bounds__(KernelConfig<BM, BN, kTmaStore>::kThreads, 1)
    fp8_gemm_sm90_kernel(const __grid_constant__ KernelArgs args, const __grid_constant__ CUtensorMap map_a,
                         const __grid_constant__ CUtensorMap map_b, const __grid_constant__ CUtensorMap map_sa,
                         const __grid_constant__ CUtensorMap map_sb, const __grid_constant__ CUtensorMap map_d) {
  using C = KernelConfig<BM, BN, kTmaStore>;
  constexpr int S = C::kStages;
  static_assert(kCluster == 1 || kCluster == 2, "CTA pairs at most");
  extern __shared__ uint8_t smem_raw[];
  // Swizzled buffers need 1024-byte alignment of the shared-memory address itself.
  uint8_t* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  uint8_t* smem_d = smem;  // kTmaStore: the staged output tile (1024-byte aligned atoms)
  uint8_t* smem_a = smem_d + C::kDBytes;
  uint8_t* smem_b = smem_a + S * C::kABytes;
  float* smem_sa = reinterpret_cast<float*>(smem_b + S * C::kBBytes);
  float* smem_sb = smem_sa + S * BM;  // S slots of kSbSlot bytes
  uint64_t* full = reinterpret_cast<uint64_t*>(reinterpret_cast<uint8_t*>(smem_sb) + S * C::kSbSlot);
  uint64_t* empty = full + S;

  const int tid = int(threadIdx.x);
  if (tid == C::kMathThreads) {
    for (int s = 0; s < S; ++s) {
      ::cuda::ptx::mbarrier_init(&full[s], 1);
      ::cuda::ptx::mbarrier_init(&empty[s], kCluster * C::kMathThreads / 32);
    }
    ::cuda::ptx::fence_mbarrier_init(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster);
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(&map_a) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(&map_b) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(&map_sa) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(&map_sb) : "memory");
    if constexpr (kTmaStore) asm volatile("prefetch.tensormap [%0];\n" ::"l"(&map_d) : "memory");
  }
  int rank = 0;  // this CTA's member of its pair
  if constexpr (kCluster > 1) {
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
    // Both CTAs' barriers exist before either copies into or arrives on the other's.
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  } else {
    __syncthreads();
  }

  const Pairing pairing = kCluster > 1 ? Pairing(args.pairing) : Pairing::None;
  TileScheduler<BM, BN> sched(kKind, args.M, args.N, args.batch, args.group_end, blockIdx.x / kCluster,
                              gridDim.x / kCluster, pairing, rank);
  Tile tile;
  int stage = 0;
  uint32_t phase = 0;
  const int kblocks = args.kblocks;

  if (tid >= C::kMathThreads) {
    // Producer warpgroup: gives its registers to the consumers; one thread issues every copy. A
    // shared operand (and, with A, its scales) is copied by the pair's first CTA into both CTAs.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(C::kProducerRegs));
    if (tid == C::kMathThreads) {
      const bool share_a = pairing == Pairing::PairN, share_b = pairing == Pairing::PairM;
      const uint16_t both = 3;
      while (sched.next_tile(tile)) {
        const int32_t row0 = int32_t(tile.row0), n0 = int32_t(tile.n0);
        const int32_t batch_a = kKind == ScheduleKind::Batched ? tile.group : 0;
        for (int kb = 0; kb < kblocks; ++kb) {
          const uint32_t stage_bytes = C::kStageBytes;
          wait_parity(&empty[stage], phase ^ 1);
          ::cuda::ptx::mbarrier_arrive_expect_tx(::cuda::ptx::sem_release, ::cuda::ptx::scope_cta,
                                                 ::cuda::ptx::space_shared, &full[stage], stage_bytes);
          const int32_t ca[3] = {kb * kBlockK, row0, batch_a};
          const int32_t cs[2] = {row0, batch_a * kblocks + kb};
          const int32_t cb[3] = {kb * kBlockK, n0, tile.group};
          const int32_t csb[3] = {kb & ~3, n0 / 128, tile.group};
          float* sb = smem_sb + stage * (C::kSbSlot / 4);
          if (!share_a) {
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                              smem_a + stage * C::kABytes, &map_a, ca, &full[stage]);
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                              smem_sa + stage * BM, &map_sa, cs, &full[stage]);
          } else if (rank == 0) {
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                              smem_a + stage * C::kABytes, &map_a, ca, &full[stage], both);
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                              smem_sa + stage * BM, &map_sa, cs, &full[stage], both);
          }
          if (!share_b) {
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                              smem_b + stage * C::kBBytes, &map_b, cb, &full[stage]);
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, sb, &map_sb,
                                              csb, &full[stage]);
          } else if (rank == 0) {
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global,
                                              smem_b + stage * C::kBBytes, &map_b, cb, &full[stage], both);
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, sb, &map_sb,
                                              csb, &full[stage], both);
          }
          if (++stage == S) stage = 0, phase ^= 1;
        }
      }
    }
    __syncwarp();
  } else {
    // Consumer warpgroups.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(C::kConsumerRegs));
    const int wg = tid / 128, tid_wg = tid % 128, lane = tid % 32;
    // Value 4j + 2h + e of the accumulator is (frag_row + 8h, 8j + frag_col + e) of the m64 wave.
    const int frag_row = accum_coord(tid_wg, 0).row, frag_col = accum_coord(tid_wg, 0).col;
    const uint32_t a_addr = smem_u32(smem_a) + uint32_t(wg * kWgmmaM * kBlockK);
    const uint32_t b_addr = smem_u32(smem_b);
    // Paired: each warp releases a stage in both CTAs (lane 0 here, lane 1 in the other CTA).
    uint64_t* release = empty;
    if constexpr (kCluster > 1)
      if (lane == 1) release = cooperative_groups::this_cluster().map_shared_rank(empty, unsigned(rank ^ 1));
    float acc[C::kAccum];
    float fin[C::kWaves][C::kAccum];
#pragma unroll
    for (int i = 0; i < C::kAccum; ++i) acc[i] = 0.0f;

    while (sched.next_tile(tile)) {
      const int former = former_chunks(tile.n0, BN);
#pragma unroll
      for (int w = 0; w < C::kWaves; ++w)
#pragma unroll
        for (int i = 0; i < C::kAccum; ++i) fin[w][i] = 0.0f;
      // An m64 wave whose rows all lie past the tile's end (the tail of an expert's segment, the
      // last m-block of a plain product) issues no wgmma: its warpgroup only keeps the pipeline.
      bool live[C::kWaves];
#pragma unroll
      for (int w = 0; w < C::kWaves; ++w)
        live[w] = tile.row0 + w * kWgmmaM * C::kMathWarpgroups + wg * kWgmmaM < tile.row_end;

      for (int kb = 0; kb < kblocks; ++kb) {
        wait_parity(&full[stage], phase);
        // The weight scales of this K block: the block of n0, and the next one (chunks past
        // former_chunks).
        const float* sb = smem_sb + stage * (C::kSbSlot / 4);
        const float sb0 = sb[kb & 3], sb1 = sb[4 + (kb & 3)];
#pragma unroll
        for (int w = 0; w < C::kWaves; ++w) {
          if (!live[w]) {
            if (w == C::kWaves - 1) {
              if (lane == 0) ::cuda::ptx::mbarrier_arrive(&empty[stage]);
              if constexpr (kCluster > 1)
                if (lane == 1)
                  ::cuda::ptx::mbarrier_arrive(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster,
                                               ::cuda::ptx::space_cluster, release + stage);
            }
            continue;
          }
          const int row = w * kWgmmaM * C::kMathWarpgroups + wg * kWgmmaM + frag_row;
          const float sa0 = smem_sa[stage * BM + row], sa1 = smem_sa[stage * BM + row + 8];
          const uint64_t da = make_smem_desc(a_addr + uint32_t(stage) * C::kABytes +
                                             uint32_t(w * kWgmmaM * C::kMathWarpgroups * kBlockK));
          const uint64_t db = make_smem_desc(b_addr + uint32_t(stage) * C::kBBytes);
#pragma unroll
          for (int i = 0; i < C::kAccum; ++i) fence_operand(acc[i]);
          wgmma_fence();
#pragma unroll
          for (int kk = 0; kk < kBlockK / kWgmmaK; ++kk)
            Wgmma<BN>::mma(acc, desc_advance_k(da, uint32_t(kk)), desc_advance_k(db, uint32_t(kk)), kk > 0 ? 1u : 0u);
          wgmma_commit();
          wgmma_wait_all();
#pragma unroll
          for (int i = 0; i < C::kAccum; ++i) fence_operand(acc[i]);
          if (w == C::kWaves - 1) {
            if (lane == 0) ::cuda::ptx::mbarrier_arrive(&empty[stage]);
            if constexpr (kCluster > 1)
              if (lane == 1)
                ::cuda::ptx::mbarrier_arrive(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster,
                                             ::cuda::ptx::space_cluster, release + stage);
          }
          const float s00 = sa0 * sb0, s01 = sa0 * sb1, s10 = sa1 * sb0, s11 = sa1 * sb1;
#pragma unroll
          for (int j = 0; j < BN / 8; ++j) {
            const bool first = C::kUniformScale || j < former;
            const float lo = first ? s00 : s01, hi = first ? s10 : s11;
            fin[w][4 * j + 0] = fmaf(lo, acc[4 * j + 0], fin[w][4 * j + 0]);
            fin[w][4 * j + 1] = fmaf(lo, acc[4 * j + 1], fin[w][4 * j + 1]);
            fin[w][4 * j + 2] = fmaf(hi, acc[4 * j + 2], fin[w][4 * j + 2]);
            fin[w][4 * j + 3] = fmaf(hi, acc[4 * j + 3], fin[w][4 * j + 3]);
          }
        }
        if (++stage == S) stage = 0, phase ^= 1;
      }
      if constexpr (kTmaStore) {
        // Staged epilogue: the previous tile's bulk store has read the stage, every thread writes
        // its BF16 column pairs (row r, 16-byte chunk c of a 64-column atom at chunk c ^ (r % 8):
        // the 8 rows of a warp's store land in 8 different chunks, no bank conflicts), then one
        // thread stores the atoms (the copy engine clips rows and columns outside D; padding rows
        // of an expert's last tile land in its padding).
        if (tid == 0) ::cuda::ptx::cp_async_bulk_wait_group_read(::cuda::ptx::n32_t<0>{});
        math_barrier(C::kMathThreads);
        if (tile.store) {
#pragma unroll
          for (int w = 0; w < C::kWaves; ++w)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int r = w * kWgmmaM * C::kMathWarpgroups + wg * kWgmmaM + frag_row + 8 * h;
#pragma unroll
              for (int j = 0; j < BN / 8; ++j) {
                const uint32_t off = uint32_t((j / 8) * BM * 128 + r * 128) +
                                     ((uint32_t((j % 8) ^ (r & 7))) << 4) + uint32_t(frag_col * 2);
                const __nv_bfloat162 v = __floats2bfloat162_rn(fin[w][4 * j + 2 * h], fin[w][4 * j + 2 * h + 1]);
                *reinterpret_cast<__nv_bfloat162*>(smem_d + off) = v;
              }
            }
          ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);
        }
        math_barrier(C::kMathThreads);
        if (tid == 0 && tile.store) {
#pragma unroll
          for (int atom = 0; atom < BN / 64; ++atom) {
            const int32_t cd[3] = {int32_t(tile.n0) + 64 * atom, int32_t(tile.row0),
                                   kKind == ScheduleKind::Batched ? tile.group : 0};
            ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_global, ::cuda::ptx::space_shared, &map_d, cd,
                                              smem_d + atom * BM * 128);
          }
          ::cuda::ptx::cp_async_bulk_commit_group();
        }
        continue;
      }
      if (!tile.store) continue;  // the idle member of a pair

      // Epilogue: each thread stores its pairs of adjacent columns (4 or 8 bytes) of two rows per
      // n8 chunk; rows past the tile's end (and grouped rows without a D row) are skipped.
      const int64_t d_batch = kKind == ScheduleKind::Batched ? int64_t(tile.group) * args.d_batch_stride : 0;
#pragma unroll
      for (int w = 0; w < C::kWaves; ++w) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t r = tile.row0 + w * kWgmmaM * C::kMathWarpgroups + wg * kWgmmaM + frag_row + 8 * h;
          if (r >= tile.row_end) continue;
          int64_t dr = r;
          if (kKind == ScheduleKind::Grouped && args.d_row != nullptr) dr = args.d_row[r];
          if (dr < 0) continue;
          if (args.d_f32) {
            float* out = static_cast<float*>(args.d) + d_batch + dr * args.ldd;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
              const int64_t c = tile.n0 + 8 * j + frag_col;
              if (c < args.N)
                *reinterpret_cast<float2*>(out + c) = make_float2(fin[w][4 * j + 2 * h], fin[w][4 * j + 2 * h + 1]);
            }
          } else {
            __nv_bfloat16* out = static_cast<__nv_bfloat16*>(args.d) + d_batch + dr * args.ldd;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
              const int64_t c = tile.n0 + 8 * j + frag_col;
              if (c < args.N)
                *reinterpret_cast<__nv_bfloat162*>(out + c) =
                    __floats2bfloat162_rn(fin[w][4 * j + 2 * h], fin[w][4 * j + 2 * h + 1]);
            }
          }
        }
      }
    }
  }
  // The staged output's last bulk store has read shared memory before the CTA leaves.
  if constexpr (kTmaStore)
    if (tid == 0) ::cuda::ptx::cp_async_bulk_wait_group(::cuda::ptx::n32_t<0>{});
  // Neither CTA of a pair leaves while the other may still copy into it or arrive on its barriers.
  if constexpr (kCluster > 1)
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

}  // namespace dsserve::cuda::sm90
