// The decode path's alignment of (token, k) pairs by expert as a block-level device function (1024
// threads), shared by the alignment kernel (moe_align.cu) and the fused router (moe_router_fused.cu).
// Each thread ranks up to 8 pairs with shared-memory atomics; thread e then owns expert e, and one
// 64-bit block scan carries three prefix sums at once (rows, work items, active experts); finally
// every pair is placed at its expert's offset plus its rank. Kernel code only.
#pragma once
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/moe/moe_kernels.h"

namespace dsserve::cuda {

namespace moe_align_detail {

using u64 = unsigned long long;

constexpr int kThreads = kMoeAlignMaxExperts;  // one thread per expert in the scan
constexpr int kPairsPerThread = kMoeAlignMaxPairs / kThreads;
static_assert(kThreads == 1024 && kMoeAlignMaxPairs % kThreads == 0, "one block of 1024 threads, whole pairs per thread");
// The packed scan: bits 0-15 active experts (<= 1024), 16-31 work items (<= experts + pairs <= 9216),
// 32-63 rows (<= 8192): no field can carry into the next.
static_assert(kMoeAlignMaxExperts < (1 << 16) && kMoeAlignMaxExperts + kMoeAlignMaxPairs < (1 << 16),
              "packed scan fields would overflow");

// Inclusive sum over the block (32 full warps).
__device__ __forceinline__ u64 block_inclusive_sum(u64 v, u64* s_warp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u64 u = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) s_warp[warp] = v;
  __syncthreads();
  if (warp == 0) {
    u64 w = s_warp[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const u64 u = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += u;
    }
    s_warp[lane] = w;
  }
  __syncthreads();
  return warp > 0 ? v + s_warp[warp - 1] : v;
}

}  // namespace moe_align_detail

// The shared memory moe_align_block needs.
struct MoeAlignShared {
  int count[kMoeAlignMaxExperts];
  int offset[kMoeAlignMaxExperts];
  unsigned long long warp[32];
};

// Aligns p with the whole block (blockDim.x == 1024); p.topk_ids must be visible to the block.
__device__ __forceinline__ void moe_align_block(const MoeAlignParams& p, MoeAlignShared& sh) {
  using namespace moe_align_detail;
  int* s_count = sh.count;
  int* s_offset = sh.offset;
  u64* s_warp = sh.warp;

  const int tid = threadIdx.x;
  s_count[tid] = 0;
  __syncthreads();

  // 1. Count pairs per expert; each pair's rank among its expert's pairs comes with the count.
  int expert[kPairsPerThread], rank[kPairsPerThread];
#pragma unroll
  for (int j = 0; j < kPairsPerThread; ++j) {
    const int i = tid + j * kThreads;
    expert[j] = -1;
    rank[j] = 0;
    if (i < p.pairs) {
      const int e = p.topk_ids[i];
      const bool valid = e >= 0 && e < p.experts;
      if (valid) {
        expert[j] = e;
        rank[j] = atomicAdd(&s_count[e], 1);
      }
      p.pair_row[i] = valid ? i : -1;
    }
  }
  __syncthreads();

  // 2. Offsets, work items and active ranks of expert tid in one scan.
  const int count = tid < p.experts ? s_count[tid] : 0;
  const int items = (count + p.rows_per_item - 1) / p.rows_per_item;
  const u64 mine = (u64(count) << 32) | (u64(items) << 16) | u64(count > 0 ? 1 : 0);
  const u64 inclusive = block_inclusive_sum(mine, s_warp);
  const u64 before = inclusive - mine;
  const int row0 = int(before >> 32), item0 = int((before >> 16) & 0xffffu), active_rank = int(before & 0xffffu);
  if (tid < p.experts) {
    p.counts[tid] = count;
    p.offsets[tid] = row0;
    s_offset[tid] = row0;
    if (count > 0) p.active[active_rank] = tid;
    for (int q = 0; q < items; ++q) {
      const int b = row0 + q * p.rows_per_item;
      reinterpret_cast<int4*>(p.items)[item0 + q] = make_int4(tid, b, min(b + p.rows_per_item, row0 + count), 0);
    }
  }
  if (tid == kThreads - 1) {  // the inclusive sum of the last thread is the total
    const int active = int(inclusive & 0xffffu);
    p.offsets[p.experts] = int(inclusive >> 32);
    *p.num_items = int((inclusive >> 16) & 0xffffu);
    *p.num_active = active;
    if (p.experts_run) atomicAdd(p.experts_run, u64(active));
  }
  __syncthreads();

  // 3. Pairs in expert order.
#pragma unroll
  for (int j = 0; j < kPairsPerThread; ++j)
    if (expert[j] >= 0) p.sorted_pair[s_offset[expert[j]] + rank[j]] = tid + j * kThreads;
}

}  // namespace dsserve::cuda
