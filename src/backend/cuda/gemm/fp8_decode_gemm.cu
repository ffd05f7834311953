// Decode-size FP8 linear (see fp8_decode_gemm.h; design and bound in gemm/README.md).
//
// A block is 4 warps; each warp owns 32 weight rows (two m16 tiles) over one K part, and keeps its
// sums in registers. Per 128-wide K chunk (one scale block) each lane copies 32 bytes of each of its
// 4 weight rows (rows g, g + 8 of both tiles) into shared memory with cp.async through a 4-stage
// ring in which each lane reads back only what it wrote (no barrier in the main loop). In registers
// the e4m3 bytes become BF16 A fragments of mma.sync.m16n8k16 (e4m3 -> f16 -> f32 times the block
// scale, rounded to BF16: the CPU oracle's dequantization); activations are BF16 B fragments read
// straight from global memory (L1 / L2 hits: every block reads the same rows).
// K is permuted inside each chunk. Lane (g, t) holds a list of 32 k: positions 0..15 are k = 16t + 0..15 and positions 16..31 are k = 64 + 16t + 0..15, so one
// 16-byte cp.async of the warp (list half j, rows g) reads bytes [64 j, 64 j + 64) of 8 rows: whole
// 32-byte sectors (a lane reading 32 contiguous bytes in two instructions would fetch every sector
// from L2 twice). mma step s uses list positions 4s .. 4s + 3, which the fragment layout sees as
// logical k {2t, 2t+1, 2t+8, 2t+9}; weights and activations share the permutation, so every dot
// product is unchanged.
// K is split between the warp groups of a block (row_warps < 4) and between the blocks of a
// thread-block cluster (grid.y = cluster): after the loop every warp writes its sums into its own
// (now idle) ring, and the blocks of the cluster sum the parts in a fixed order through distributed
// shared memory, each block writing a share of the output tile. No global workspace, one launch.
#include <cooperative_groups.h>

#include <algorithm>
#include <atomic>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/common/fp8_dequant.cuh"
#include "backend/cuda/common/mma_sync.cuh"
#include "backend/cuda/gemm/fp8_decode_gemm.h"

namespace dsserve::cuda {

namespace {

namespace cgr = cooperative_groups;

constexpr int kWarps = 4, kThreads = 32 * kWarps, kStages = 4;
constexpr int kChunk = 128;     // k per chunk: one scale block, 32 bytes per lane and row
constexpr int kSteps = kChunk / 16;  // mma k-steps per chunk
constexpr int kLaneVecs = 8;    // 16-byte weight vectors per lane and chunk: 2 m16 tiles x rows (g, g + 8) x 2
constexpr int kWarpRows = 32;
constexpr int kMaxCluster = 8;  // the portable cluster size
constexpr int kWarpRingVecs = kStages * kLaneVecs * 32;                 // uint4 per warp
constexpr int kSmemBytes = int(sizeof(uint4)) * kWarps * kWarpRingVecs;  // 64 KiB: 3 blocks per SM
static_assert(kWarpRingVecs * 4 >= 8 * 8 * 32, "a warp's ring holds its partial sums at 64 tokens");

// kNF: n fragments of 8 tokens (T <= 8 kNF). The activation vectors of a chunk are loaded in
// kXParts pieces so that 64 tokens fit in the registers of 3 blocks per SM.
template <int kNF, typename OutT>
__global__ void __launch_bounds__(kThreads, kNF >= 8 ? 2 : 3)
    fp8_decode_gemm_kernel(const Fp8DecodeGemmParams p, const int row_warps, const int k_parts) {
  constexpr int kXParts = kNF >= 8 ? 4 : kNF >= 4 ? 2 : 1, kPartVecs = 4 / kXParts, kPartSteps = kSteps / kXParts;
  extern __shared__ uint4 s_ring[];  // [kWarps][kStages][kLaneVecs][32]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int row_sub = warp % row_warps, k_sub = warp / row_warps, cluster = int(gridDim.y);
  const int64_t K = p.K, rows = p.rows;
  const int chunks = int(K / kChunk), part = int(blockIdx.y) * (kWarps / row_warps) + k_sub;
  const int64_t tile_row0 = int64_t(blockIdx.x) * kWarpRows * row_warps;
  const int64_t row_base = tile_row0 + int64_t(row_sub) * kWarpRows;  // this warp's 32 rows (one scale block row)
  // Part `part` of k_parts <= chunks: chunks [part chunks / k_parts, (part + 1) chunks / k_parts).
  const int c_begin = int(int64_t(part) * chunks / k_parts);
  const int c_end = row_base < rows ? int(int64_t(part + 1) * chunks / k_parts) : c_begin;

  const uint8_t* w_row[2][2];
  bool w_ok[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = row_base + mt * 16 + h * 8 + g;
      w_ok[mt][h] = r < rows;
      w_row[mt][h] = p.w + (w_ok[mt][h] ? r : 0) * K + t * 16;
    }
  const float* scale_row = p.w_scale + (row_base < rows ? row_base / 128 : 0) * p.scale_ld;

  const bf16* x_row[kNF];
  bool x_ok[kNF];
#pragma unroll
  for (int nf = 0; nf < kNF; ++nf) {
    const int64_t token = nf * 8 + g;
    x_ok[nf] = token < p.T;
    x_row[nf] = static_cast<const bf16*>(p.x) + (x_ok[nf] ? token : 0) * p.ldx + t * 16;
  }

  uint4* ring = s_ring + warp * kWarpRingVecs + lane;
  auto slot_of = [&](int c) { return ring + ((c - c_begin) % kStages) * kLaneVecs * 32; };
  auto issue = [&](int c) {
    uint4* slot = slot_of(c);
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          cp_async_16(slot + (mt * 4 + h * 2 + j) * 32, w_ok[mt][h] ? w_row[mt][h] + c * kChunk + j * 64 : p.w,
                      w_ok[mt][h]);
  };
  // Activation vectors q * kPartVecs .. of this lane's 32 elements of chunk c, for every n fragment:
  // vector u holds list positions 8u .. 8u + 7, i.e. elements 64 (u / 2) + 16 t + 8 (u % 2) + 0..7.
  auto load_x = [&](uint4 (&xv)[kNF][kPartVecs], int c, int q) {
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int v = 0; v < kPartVecs; ++v) {
        const int u = q * kPartVecs + v;
        xv[nf][v] = x_ok[nf] ? __ldg(reinterpret_cast<const uint4*>(x_row[nf] + c * kChunk + (u / 2) * 64 + (u % 2) * 8))
                             : make_uint4(0, 0, 0, 0);
      }
  };

  float acc[2][kNF][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nf][i] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (c_begin + s < c_end) issue(c_begin + s);
    cp_async_commit();
  }
  for (int c = c_begin; c < c_end; ++c) {
    compiler_fence();  // the previous iteration's reads of the slot refilled here stay above
    if (c + kStages - 1 < c_end) issue(c + kStages - 1);
    cp_async_commit();
    const float scale = __ldg(scale_row + c);
    uint4 xv[kNF][kPartVecs];
    load_x(xv, c, 0);

    cp_async_wait<kStages - 1>();  // this lane's copies of chunk c have landed
    compiler_fence();
    const uint4* slot = slot_of(c);
    uint4 wv[kLaneVecs];  // [mt][h][j]: list positions 16 j .. 16 j + 15 of row g + 8 h of tile mt

#pragma unroll
    for (int q = 0; q < kXParts; ++q) {
      if (q > 0) {
        compiler_fence();  // keeps this piece's loads (and so its conversions) below the previous piece
        load_x(xv, c, q);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j)  // weight half j is first used by step 4j: read it in that step's piece
        if (4 * j >= q * kPartSteps && 4 * j < (q + 1) * kPartSteps)
#pragma unroll
          for (int i = 0; i < 4; ++i) wv[2 * i + j] = slot[(2 * i + j) * 32];
#pragma unroll
      for (int ss = 0; ss < kPartSteps; ++ss) {
        const int s = q * kPartSteps + ss;
        uint32_t a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {  // list positions 4s .. 4s + 3: vector s / 4, word s % 4
          const uint32_t lo = word(wv[mt * 4 + 0 + s / 4], s % 4), hi = word(wv[mt * 4 + 2 + s / 4], s % 4);
          a[mt][0] = e4m3x2_to_scaled_bf16x2(lo, scale);
          a[mt][1] = e4m3x2_to_scaled_bf16x2(hi, scale);
          a[mt][2] = e4m3x2_to_scaled_bf16x2(lo >> 16, scale);
          a[mt][3] = e4m3x2_to_scaled_bf16x2(hi >> 16, scale);
        }
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf) {
          // Activation list positions 4s .. 4s + 3: vector s / 2 (local s / 2 - q kPartVecs), words
          // 2s % 4 and 2s % 4 + 1.
          const uint4& v = xv[nf][s / 2 - q * kPartVecs];
          const uint32_t b0 = word(v, (2 * s) % 4), b1 = word(v, (2 * s) % 4 + 1);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) mma_bf16_reorderable(acc[mt][nf], a[mt], b0, b1);
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncwarp();

  // Partial sums into this warp's ring: element e = (mt kNF + nf) 4 + i of lane l at [e][l].
  constexpr int kElems = 8 * kNF, kWarpFloats = kWarpRingVecs * 4;
  float* own = reinterpret_cast<float*>(s_ring + warp * kWarpRingVecs);
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) own[((mt * kNF + nf) * 4 + i) * 32 + lane] = acc[mt][nf][i];
#if __CUDA_ARCH__ >= 900
  if (cluster > 1)
    cgr::this_cluster().sync();  // every block of the cluster has written its parts
  else
#endif
    __syncthreads();

  // Sum over the K parts (the cluster's blocks, then the block's warp groups, in that fixed order);
  // block r of the cluster writes items r, r + cluster, ... of the tile (in units of 128 threads).
  const float* block_sums = reinterpret_cast<const float*>(s_ring);
#if __CUDA_ARCH__ >= 900
  const int rank = cluster > 1 ? int(cgr::this_cluster().block_rank()) : 0;
#else
  const int rank = 0;  // sm_80: launched without clusters (cluster == 1)
#endif
  const int groups = kWarps / row_warps;
  const int items = row_warps * kElems * 32;
  OutT* y = static_cast<OutT*>(p.y);
  for (int it = rank * kThreads + int(threadIdx.x); it < items; it += cluster * kThreads) {
    const int l = it % 32, e = (it / 32) % kElems, sub = it / (32 * kElems);
    float sum = 0.0f;
    for (int b = 0; b < cluster; ++b) {
#if __CUDA_ARCH__ >= 900
      const float* base = cluster > 1 ? cgr::this_cluster().map_shared_rank(block_sums, b) : block_sums;
#else
      const float* base = block_sums;
#endif
      for (int j = 0; j < groups; ++j) sum += base[(j * row_warps + sub) * kWarpFloats + e * 32 + l];
    }
    // Accumulator element i of (mt, nf): weight row g + 8 (i / 2) of tile mt, token nf * 8 + 2t + (i % 2).
    const int i = e % 4, nf = (e / 4) % kNF, mt = e / (4 * kNF);
    const int64_t row = tile_row0 + sub * kWarpRows + mt * 16 + (l >> 2) + 8 * (i / 2);
    const int64_t token = nf * 8 + 2 * (l & 3) + (i % 2);
    if (row < rows && token < p.T) y[token * p.ldy + row] = from_f<OutT>(sum);
  }
#if __CUDA_ARCH__ >= 900
  if (cluster > 1) cgr::this_cluster().sync();  // the blocks' shared memory outlives every read of it
#endif
}

cudaLaunchConfig_t launch_config(dim3 grid, int cluster, cudaStream_t stream, cudaLaunchAttribute (&attr)[1]) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = kSmemBytes;
  cfg.stream = stream;
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = unsigned(cluster);
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = cluster > 1 ? 1 : 0;
  return cfg;
}

// The current device's capacity for one kernel variant (queried once per device).
// err (when given) receives a failure to configure the kernel; the capacity then assumes 1 block per SM.
template <int kNF, typename OutT>
Fp8DecodeCapacity capacity_of(cudaError_t* err = nullptr) {
  static std::atomic<int64_t> cached[64][5];  // [device][sms, resident by cluster 1, 2, 4, 8]
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return Fp8DecodeCapacity::uniform(132, 2);
  Fp8DecodeCapacity cap;
  if (cached[dev][0].load(std::memory_order_acquire) == 0) {
    int sms = 0, per_sm = 0;
    auto kernel = fp8_decode_gemm_kernel<kNF, OutT>;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) sms = 132;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, kSmemBytes);
    if (e != cudaSuccess || per_sm <= 0) {
      if (err && e != cudaSuccess) *err = e;
      per_sm = 1;
    }
    cap = Fp8DecodeCapacity::uniform(sms, per_sm);
    int major = 0;
    const bool has_clusters =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
    for (int i = 1; i < 4 && !has_clusters; ++i) cap.resident[i] = 0;  // before sm_90: no clusters
    for (int i = 1; i < 4 && has_clusters; ++i) {  // clusters: what fits in the GPCs, never more than the uniform bound
      const int cluster = 1 << i;
      cudaLaunchAttribute attr[1];
      const cudaLaunchConfig_t cfg = launch_config(dim3(unsigned(cluster), unsigned(cluster)), cluster, nullptr, attr);
      int clusters = 0;
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess)
        cap.resident[i] = std::min(cap.resident[i], int64_t(std::max(clusters, 0)) * cluster);
      else
        cudaGetLastError();  // no answer: keep the uniform bound
    }
    for (int i = 0; i < 4; ++i) cached[dev][i + 1].store(cap.resident[i], std::memory_order_relaxed);
    cached[dev][0].store(sms, std::memory_order_release);
    return cap;
  }
  cap.sms = int(cached[dev][0].load(std::memory_order_acquire));
  for (int i = 0; i < 4; ++i) cap.resident[i] = cached[dev][i + 1].load(std::memory_order_relaxed);
  return cap;
}

template <int kNF, typename OutT>
Fp8DecodePlan plan_typed(const Fp8DecodeGemmParams& p) {
  Fp8DecodeCapacity cap = capacity_of<kNF, OutT>();
  for (int i = 1; i < 4; ++i)
    if ((1 << i) > p.max_cluster) cap.resident[i] = 0;  // clusters of this size are not to be used
  return plan_fp8_decode_gemm(p.rows, p.K, cap);
}

template <int kNF, typename OutT>
cudaError_t launch_typed(const Fp8DecodeGemmParams& p, cudaStream_t stream) {
  const Fp8DecodePlan plan = plan_typed<kNF, OutT>(p);
  auto kernel = fp8_decode_gemm_kernel<kNF, OutT>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  if (e != cudaSuccess) return e;
  const int64_t tiles = plan.blocks / plan.cluster;
  if (tiles <= 0 || tiles > 0x7fffffff) return cudaErrorInvalidValue;
  cudaLaunchAttribute attr[1];
  const cudaLaunchConfig_t cfg = launch_config(dim3(unsigned(tiles), unsigned(plan.cluster)), plan.cluster, stream, attr);
  e = cudaLaunchKernelEx(&cfg, kernel, p, plan.row_warps, plan.k_parts());
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

bool valid(const Fp8DecodeGemmParams& p) {
  return p.x && p.w && p.w_scale && p.y && p.T >= 1 && p.T <= kFp8DecodeMaxTokens && p.rows >= 1 && p.K >= kChunk &&
         p.K % kChunk == 0 && p.ldx >= p.K && p.ldx % 8 == 0 && p.scale_ld >= p.K / kChunk && p.ldy >= p.rows &&
         reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(p.w) % 16 == 0 &&
         (p.y_dtype == DType::BF16 || p.y_dtype == DType::F32);
}

// Runs Fn<kNF, OutT>::run(p) for the smallest n-fragment count that holds p.T tokens and p.y_dtype.
template <template <int, typename> class Fn>
auto dispatch(const Fp8DecodeGemmParams& p, cudaStream_t stream) {
  const bool f32 = p.y_dtype == DType::F32;
  if (p.T <= 8) return f32 ? Fn<1, float>::run(p, stream) : Fn<1, bf16>::run(p, stream);
  if (p.T <= 16) return f32 ? Fn<2, float>::run(p, stream) : Fn<2, bf16>::run(p, stream);
  if (p.T <= 32) return f32 ? Fn<4, float>::run(p, stream) : Fn<4, bf16>::run(p, stream);
  return f32 ? Fn<8, float>::run(p, stream) : Fn<8, bf16>::run(p, stream);
}

template <int kNF, typename OutT>
struct PlanFn {
  static Fp8DecodePlan run(const Fp8DecodeGemmParams& p, cudaStream_t) { return plan_typed<kNF, OutT>(p); }
};
template <int kNF, typename OutT>
struct LaunchFn {
  static cudaError_t run(const Fp8DecodeGemmParams& p, cudaStream_t stream) { return launch_typed<kNF, OutT>(p, stream); }
};

}  // namespace

Fp8DecodePlan plan_fp8_decode_gemm(int64_t rows, int64_t K, const Fp8DecodeCapacity& cap) {
  const int64_t chunks = std::max<int64_t>(1, K / kChunk);
  const int64_t want = std::min<int64_t>(2 * int64_t(std::max(cap.sms, 1)), cap.resident[0]);
  auto make = [&](int row_warps, int cluster) {
    Fp8DecodePlan pl;
    pl.row_warps = row_warps;
    pl.cluster = cluster;
    pl.chunks_per_part = ceil_div(chunks, pl.k_parts());
    pl.blocks = ceil_div(rows, int64_t(kWarpRows) * row_warps) * cluster;
    return pl;
  };
  // Candidates by the number of K parts, then the most rows per block (activations re-read less).
  Fp8DecodePlan best_resident{}, first = make(4, 1);
  bool have_resident = false;
  for (int parts = 1; parts <= kMaxCluster * kWarps; parts *= 2) {
    if (parts > chunks) break;
    for (int row_warps : {4, 2, 1}) {
      const int groups = kWarps / row_warps;
      if (parts % groups != 0 || parts / groups > kMaxCluster) continue;
      const Fp8DecodePlan pl = make(row_warps, parts / groups);
      const int cluster_index = pl.cluster == 1 ? 0 : pl.cluster == 2 ? 1 : pl.cluster == 4 ? 2 : 3;
      if (pl.blocks > cap.resident[cluster_index]) continue;
      if (pl.blocks >= want) return pl;
      if (!have_resident || pl.blocks > best_resident.blocks) best_resident = pl, have_resident = true;
    }
  }
  return have_resident ? best_resident : first;
}

cudaError_t prepare_fp8_decode_gemm() {
  cudaError_t e = cudaSuccess;
  capacity_of<1, bf16>(&e), capacity_of<2, bf16>(&e), capacity_of<4, bf16>(&e), capacity_of<8, bf16>(&e);
  capacity_of<1, float>(&e), capacity_of<2, float>(&e), capacity_of<4, float>(&e), capacity_of<8, float>(&e);
  return e;
}

Fp8DecodePlan fp8_decode_gemm_plan(const Fp8DecodeGemmParams& p) {
  return valid(p) ? dispatch<PlanFn>(p, nullptr) : Fp8DecodePlan{};
}

cudaError_t launch_fp8_decode_gemm(const Fp8DecodeGemmParams& p, cudaStream_t stream) {
  return valid(p) ? dispatch<LaunchFn>(p, stream) : cudaErrorInvalidValue;
}

}  // namespace dsserve::cuda
