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

template <int BM, int BN, bool kTmaStore = false, bool kPipelined = false>
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
  // kPipelined: each consumer warpgroup keeps two accumulator sets and issues K block s + 1 before
  // it promotes K block s (wgmma.wait_group 1), so its tensor work runs on while it promotes and
  // stores; one m64 wave per warpgroup (BM = 128) and three BN / 2 register arrays.
  static_assert(!kPipelined || (BM == 128 && 3 * kAccum <= 200), "pipelined consumers: BM 128, BN up to 128");
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
  // Rows of one staged bulk store: the tile (one store after both warpgroups), or with kPipelined
  // each warpgroup's 64 rows (each warpgroup stores its half on its own).
  static constexpr int kStoreRows = kPipelined ? kWgmmaM : BM;
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


__device__ __forceinline__ void wgmma_wait_one() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
__device__ __forceinline__ void wg_barrier(int wg) { asm volatile("bar.sync %0, 128;\n" ::"r"(2 + wg) : "memory"); }

// Releases a stage: one arrival per consumer warp, on this CTA's barrier and (pairs) the partner's.
template <int kCluster>
__device__ __forceinline__ void release_stage(uint64_t* empty, uint64_t* remote_empty, int stage, int lane) {
  if (lane == 0) ::cuda::ptx::mbarrier_arrive(&empty[stage]);
  if constexpr (kCluster > 1)
    if (lane == 1)
      ::cuda::ptx::mbarrier_arrive(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster, ::cuda::ptx::space_cluster,
                                   remote_empty + stage);
}

// Stores a consumer warpgroup's m64 waves of a finished tile from registers: column pairs (4 bytes
// BF16, 8 bytes float32) of two rows per n8 chunk, bounds-checked; grouped products may store row
// r as d_row[r].
template <int BN, int kWaves, int kMathWarpgroups, ScheduleKind kKind>
__device__ __forceinline__ void store_registers(const KernelArgs& args, int group, int64_t row0, int64_t row_end,
                                                int64_t n0, int wg, int frag_row, int frag_col,
                                                const float (&fin)[kWaves][BN / 2]) {
  const int64_t d_batch = kKind == ScheduleKind::Batched ? int64_t(group) * args.d_batch_stride : 0;
#pragma unroll
  for (int w = 0; w < kWaves; ++w) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = row0 + w * kWgmmaM * kMathWarpgroups + wg * kWgmmaM + frag_row + 8 * h;
      if (r >= row_end) continue;
      int64_t dr = r;
      if (kKind == ScheduleKind::Grouped && args.d_row != nullptr) dr = args.d_row[r];
      if (dr < 0) continue;
      if (args.d_f32) {
        float* out = static_cast<float*>(args.d) + d_batch + dr * args.ldd;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int64_t c = n0 + 8 * j + frag_col;
          if (c < args.N)
            *reinterpret_cast<float2*>(out + c) = make_float2(fin[w][4 * j + 2 * h], fin[w][4 * j + 2 * h + 1]);
        }
      } else {
        __nv_bfloat16* out = static_cast<__nv_bfloat16*>(args.d) + d_batch + dr * args.ldd;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int64_t c = n0 + 8 * j + frag_col;
          if (c < args.N)
            *reinterpret_cast<__nv_bfloat162*>(out + c) =
                __floats2bfloat162_rn(fin[w][4 * j + 2 * h], fin[w][4 * j + 2 * h + 1]);
        }
      }
    }
  }
}

// What a stage holds besides its operands, for pipelined consumers: the tile and K block, written
// by the producer thread into the stage's scale slot (bytes 64..87; the weight scales take 0..31)
// before it arms the stage's barrier, whose arrival releases them to the consumers' wait. After the
// last tile the producer arms one more stage with only the end flag.
struct StageInfo {
  int32_t group, row0, row_end, n0, kb, flags;  // flags: kStore, kEnd
  static constexpr int32_t kStore = 1, kEnd = 2;
  static constexpr int kFloatOffset = 16;  // floats into the scale slot
};

// One K block of one tile as a pipelined consumer warpgroup sees it: where it lives in the ring,
// and the scale products its promotion needs (read when the stage arrived).
struct Step {
  int32_t group, row0, row_end, n0;  // the tile (rows and columns below 2^31: the launcher checks)
  bool store;                        // false for the idle member of a CTA pair
  bool live;                         // this warpgroup's m64 rows of the tile hold any row of the problem
  int kb, stage;
  float s00, s01, s10, s11;
};

// The pipelined consumer warpgroup (kPipelined): a stream of steps, each one stage of the ring as
// the producer filled it (the stage says which tile and K block). Step i's wgmma runs on the tensor
// cores while step i - 1 is promoted (and, at a tile's last K block, stored), so neither the
// promotion nor the epilogue leaves the tensor cores idle; the accumulator sets alternate (acc0
// for even steps, acc1 for odd), unrolled by two so every register index is a constant. The tile
// order lives only in the producer, which keeps the consumers' registers for the accumulators.
template <int BM, int BN, ScheduleKind kKind, int kCluster, bool kTmaStore>
struct PipelinedConsumer {
  using C = KernelConfig<BM, BN, kTmaStore, true>;
  static constexpr int S = C::kStages, A = C::kAccum;
  const KernelArgs& args;
  const CUtensorMap* map_d;
  uint64_t *full, *empty, *remote_empty;
  const uint8_t* smem_d_wg;  // this warpgroup's half of the staged output tile
  const float *smem_sa, *smem_sb;
  uint32_t a_addr, b_addr;
  int wg, tid_wg, lane, frag_row, frag_col, kblocks;
  int issue_stage = 0;
  uint32_t issue_phase = 0;

  // Waits for the next stage; unless it holds the end flag, reads its tile and scales and issues
  // its four k32 wgmma into acc (one commit group). Returns false at the end flag.
  __device__ __forceinline__ bool issue(float (&acc)[A], Step& st) {
    wait_parity(&full[issue_stage], issue_phase);
    const float* slot = smem_sb + issue_stage * (C::kSbSlot / 4);
    const StageInfo info = *reinterpret_cast<const StageInfo*>(slot + StageInfo::kFloatOffset);
    if (info.flags & StageInfo::kEnd) return false;
    st.group = info.group, st.row0 = info.row0, st.row_end = info.row_end, st.n0 = info.n0;
    st.store = (info.flags & StageInfo::kStore) != 0, st.kb = info.kb, st.stage = issue_stage;
    st.live = info.row0 + wg * kWgmmaM < info.row_end;
    const float sb0 = slot[info.kb & 3], sb1 = slot[4 + (info.kb & 3)];
    const int row = wg * kWgmmaM + frag_row;
    const float sa0 = smem_sa[issue_stage * BM + row], sa1 = smem_sa[issue_stage * BM + row + 8];
    st.s00 = sa0 * sb0, st.s01 = sa0 * sb1, st.s10 = sa1 * sb0, st.s11 = sa1 * sb1;
    if (st.live) {
      const uint64_t da = make_smem_desc(a_addr + uint32_t(issue_stage) * C::kABytes);
      const uint64_t db = make_smem_desc(b_addr + uint32_t(issue_stage) * C::kBBytes);
#pragma unroll
      for (int i = 0; i < A; ++i) fence_operand(acc[i]);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBlockK / kWgmmaK; ++kk)
        Wgmma<BN>::mma(acc, desc_advance_k(da, uint32_t(kk)), desc_advance_k(db, uint32_t(kk)), kk > 0 ? 1u : 0u);
#pragma unroll
      for (int i = 0; i < A; ++i) fence_operand(acc[i]);
    }
    wgmma_commit();
    if (++issue_stage == S) issue_stage = 0, issue_phase ^= 1;
    return true;
  }

  // fin (+)= acc x scales: the first K block of a tile sets, the others add.
  __device__ __forceinline__ void promote(const float (&acc)[A], float (&fin)[1][A], const Step& st) {
    if (!st.live) {
      if (st.kb == 0)
#pragma unroll
        for (int i = 0; i < A; ++i) fin[0][i] = 0.0f;
      return;
    }
    const int former = former_chunks(st.n0, BN);
    if (st.kb == 0) {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const bool first = C::kUniformScale || j < former;
        const float lo = first ? st.s00 : st.s01, hi = first ? st.s10 : st.s11;
        fin[0][4 * j + 0] = lo * acc[4 * j + 0];
        fin[0][4 * j + 1] = lo * acc[4 * j + 1];
        fin[0][4 * j + 2] = hi * acc[4 * j + 2];
        fin[0][4 * j + 3] = hi * acc[4 * j + 3];
      }
    } else {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const bool first = C::kUniformScale || j < former;
        const float lo = first ? st.s00 : st.s01, hi = first ? st.s10 : st.s11;
        fin[0][4 * j + 0] = fmaf(lo, acc[4 * j + 0], fin[0][4 * j + 0]);
        fin[0][4 * j + 1] = fmaf(lo, acc[4 * j + 1], fin[0][4 * j + 1]);
        fin[0][4 * j + 2] = fmaf(hi, acc[4 * j + 2], fin[0][4 * j + 2]);
        fin[0][4 * j + 3] = fmaf(hi, acc[4 * j + 3], fin[0][4 * j + 3]);
      }
    }
  }

  // Stores this warpgroup's 64 rows of a finished tile: staged in its half of the output buffer
  // (64-column atoms of 64 rows x 128 bytes, 128B-swizzled) and written by one bulk tensor store
  // per atom, or from registers.
  __device__ __forceinline__ void store(const Step& tile, const float (&fin)[1][A]) {
    const bool live = tile.live;
    // An expert's tail rows must not reach the padding after its segment: a grouped warpgroup
    // whose 64 rows pass the segment's end stores from registers (bounds-checked). Plain and
    // batched rows past M are clipped by the copy engine.
    const bool whole = kKind == ScheduleKind::Batched || tile.row0 + (wg + 1) * kWgmmaM <= tile.row_end;
    if (kTmaStore && whole) {
      // The warpgroup's previous bulk store has read the buffer.
      if (tid_wg == 0) ::cuda::ptx::cp_async_bulk_wait_group_read(::cuda::ptx::n32_t<0>{});
      wg_barrier(wg);
      const bool write = tile.store && live;
      if (write) {
        uint8_t* out = const_cast<uint8_t*>(smem_d_wg);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = frag_row + 8 * h;
#pragma unroll
          for (int j = 0; j < BN / 8; ++j) {
            const uint32_t off = uint32_t((j / 8) * kWgmmaM * 128 + r * 128) + ((uint32_t((j % 8) ^ (r & 7))) << 4) +
                                 uint32_t(frag_col * 2);
            *reinterpret_cast<__nv_bfloat162*>(out + off) =
                __floats2bfloat162_rn(fin[0][4 * j + 2 * h], fin[0][4 * j + 2 * h + 1]);
          }
        }
        ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);
      }
      wg_barrier(wg);
      if (tid_wg == 0 && write) {
#pragma unroll
        for (int atom = 0; atom < BN / 64; ++atom) {
          const int32_t cd[3] = {tile.n0 + 64 * atom, tile.row0 + wg * kWgmmaM,
                                 kKind == ScheduleKind::Batched ? tile.group : 0};
          ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_global, ::cuda::ptx::space_shared, map_d, cd,
                                            smem_d_wg + atom * kWgmmaM * 128);
        }
        ::cuda::ptx::cp_async_bulk_commit_group();
      }
    } else {
      if (tile.store && live)
        store_registers<BN, 1, 2, kKind>(args, tile.group, tile.row0, tile.row_end, tile.n0, wg, frag_row, frag_col,
                                         fin);
    }
  }

  // Retires the oldest step (its accumulators `acc`) while the next one, if any, is issued into
  // `other`. Returns whether a step remains in flight.
  __device__ __forceinline__ bool step(float (&acc)[A], float (&other)[A], float (&fin)[1][A], Step& cur) {
    Step nxt;
    const bool more = issue(other, nxt);
    if (more) {
      wgmma_wait_one();
    } else {
      wgmma_wait_all();
    }
#pragma unroll
    for (int i = 0; i < A; ++i) fence_operand(acc[i]);
    release_stage<kCluster>(empty, remote_empty, cur.stage, lane);
    promote(acc, fin, cur);
    if (cur.kb == kblocks - 1) store(cur, fin);
    cur = nxt;
    return more;
  }

  __device__ __forceinline__ void run() {
    // No initial values: a step's first wgmma overwrites its accumulators (scale_d = 0) and a
    // tile's first promotion sets fin (copies of zeros here would sit between in-flight wgmma and
    // make the compiler wait for them).
    float acc0[A], acc1[A], fin[1][A];
    Step cur;
    if (!issue(acc0, cur)) return;
    while (step(acc0, acc1, fin, cur) && step(acc1, acc0, fin, cur)) {
    }
  }
};

template <int BM, int BN, ScheduleKind kKind, int kCluster, bool kTmaStore, bool kPipelined>
__global__ void __launch_bounds__(KernelConfig<BM, BN, kTmaStore, kPipelined>::kThreads, 1)
    fp8_gemm_sm90_kernel(const __grid_constant__ KernelArgs args, const __grid_constant__ CUtensorMap map_a,
                         const __grid_constant__ CUtensorMap map_b, const __grid_constant__ CUtensorMap map_sa,
                         const __grid_constant__ CUtensorMap map_sb, const __grid_constant__ CUtensorMap map_d) {
  using C = KernelConfig<BM, BN, kTmaStore, kPipelined>;
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

  // Register split (-Xptxas -v, no spills): the dense single-CTA pipelined consumers (three
  // accumulator arrays) take 240 and leave the producer 24 (2 x 128 x 240 + 128 x 24 = 384 x 168);
  // elsewhere 232 / 40, where the producer's pair and expert-group walks fit.
  constexpr bool kWideConsumers = kPipelined && BN == 128 && kCluster == 1 && kKind == ScheduleKind::Batched;
  constexpr int kProducerRegs = kWideConsumers ? 24 : C::kProducerRegs;
  constexpr int kConsumerRegs = kWideConsumers ? 240 : C::kConsumerRegs;
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
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (tid == C::kMathThreads) {
      const bool share_a = pairing == Pairing::PairN, share_b = pairing == Pairing::PairM;
      const uint16_t both = 3;
      while (sched.next_tile(tile)) {
        const int32_t row0 = int32_t(tile.row0), n0 = int32_t(tile.n0);
        const int32_t batch_a = kKind == ScheduleKind::Batched ? tile.group : 0;
        for (int kb = 0; kb < kblocks; ++kb) {
          const uint32_t stage_bytes = C::kStageBytes;
          wait_parity(&empty[stage], phase ^ 1);
          if constexpr (kPipelined)
            *reinterpret_cast<StageInfo*>(smem_sb + stage * (C::kSbSlot / 4) + StageInfo::kFloatOffset) =
                StageInfo{tile.group, row0, int32_t(tile.row_end), n0, kb, tile.store ? StageInfo::kStore : 0};
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
      if constexpr (kPipelined) {
        // The end flag: one more stage, armed without bytes.
        wait_parity(&empty[stage], phase ^ 1);
        *reinterpret_cast<StageInfo*>(smem_sb + stage * (C::kSbSlot / 4) + StageInfo::kFloatOffset) =
            StageInfo{0, 0, 0, 0, 0, StageInfo::kEnd};
        ::cuda::ptx::mbarrier_arrive(&full[stage]);
      }
    }
    __syncwarp();
  } else {
    // Consumer warpgroups.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
    const int wg = tid / 128, tid_wg = tid % 128, lane = tid % 32;
    // Value 4j + 2h + e of the accumulator is (frag_row + 8h, 8j + frag_col + e) of the m64 wave.
    const int frag_row = accum_coord(tid_wg, 0).row, frag_col = accum_coord(tid_wg, 0).col;
    const uint32_t a_addr = smem_u32(smem_a) + uint32_t(wg * kWgmmaM * kBlockK);
    const uint32_t b_addr = smem_u32(smem_b);
    // Paired: each warp releases a stage in both CTAs (lane 0 here, lane 1 in the other CTA).
    uint64_t* release = empty;
    if constexpr (kCluster > 1)
      if (lane == 1) release = cooperative_groups::this_cluster().map_shared_rank(empty, unsigned(rank ^ 1));
    if constexpr (kPipelined) {
      PipelinedConsumer<BM, BN, kKind, kCluster, kTmaStore> consumer{
          args, &map_d, full, empty, release, smem_d + wg * (BN / 64) * kWgmmaM * 128, smem_sa, smem_sb,
          a_addr, b_addr, wg, tid_wg, lane, frag_row, frag_col, kblocks};
      consumer.run();
    } else {
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
      // Grouped tiles reaching past their segment's end store from registers (the padding rows
      // after an expert's segment stay unwritten).
      if (kTmaStore && (kKind == ScheduleKind::Batched || tile.row0 + BM <= tile.row_end)) {
        // Staged epilogue: the previous tile's bulk store has read the stage, every thread writes
        // its BF16 column pairs (row r, 16-byte chunk c of a 64-column atom at chunk c ^ (r % 8):
        // the 8 rows of a warp's store land in 8 different chunks, no bank conflicts), then one
        // thread stores the atoms (the copy engine clips rows and columns outside D).
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
    }  // classic consumers
  }
  // The staged output's last bulk stores have read shared memory before the CTA leaves.
  if constexpr (kTmaStore)
    if (tid % 128 == 0 && tid < C::kMathThreads) ::cuda::ptx::cp_async_bulk_wait_group(::cuda::ptx::n32_t<0>{});
  // Neither CTA of a pair leaves while the other may still copy into it or arrive on its barriers.
  if constexpr (kCluster > 1)
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

}  // namespace dsserve::cuda::sm90
