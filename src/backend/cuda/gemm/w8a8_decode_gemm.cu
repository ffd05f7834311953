// Decode-size W8A8 linear (see w8a8_decode_gemm.h; design and figures in gemm/README.md).
//
// A block is 8 warps over 128 weight rows (SiluMulQuant: 128 gate rows and the 128 matching up
// rows), each warp one m16 tile (two), all tokens. Weights go straight from global memory into
// registers (no shared memory on the way: the fragment layout of fp8_mma.cuh makes every lane's
// bytes its own), kDepth chunks of 128 k ahead of the tensor cores, so a warp keeps kDepth x 2 KiB
// (per m16 tile) in flight with nothing but its registers. The weight loads of the first chunks are
// issued before griddepcontrol.wait, so with programmatic dependent launch they overlap the
// previous kernel. Per chunk: 4 mma.sync m16n8k32 per 8 tokens from zero, then the float32 partial
// times weight scale x token scale is added to the accumulators (the block-scale promotion).
// K is split among the `split` blocks of a thread-block cluster (grid.y); their partial sums meet
// in distributed shared memory in a fixed order (deterministic). The SiluMulQuant epilogue then
// forms silu(gate) * up for each token's 128 columns and quantizes them per token (amax over the
// 128 columns of the block) for the down projection.
#include <cooperative_groups.h>

#include <atomic>
#include <climits>

#include "backend/cuda/common/device_props.h"
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/gemm/fp8_mma.cuh"
#include "backend/cuda/gemm/w8a8_mainloop.cuh"
#include "backend/cuda/gemm/w8a8_decode_gemm.h"

namespace dsserve::cuda {

namespace {

namespace cgr = cooperative_groups;

constexpr int kWarps = 8, kThreads = 32 * kWarps, kChunk = 128, kTileRows = 16 * kWarps;

// Chunks in flight per warp, by n fragments and m tiles (what fits in the registers).
template <int kNF, int kMT>
constexpr int depth() {
  if constexpr (kMT == 1) return kNF == 1 ? 4 : kNF <= 4 ? 3 : 2;
  return 2;
}
// Activation fragments loaded together (64 tokens load in two halves to save registers).
template <int kNF>
constexpr int x_group() { return kNF < 4 ? kNF : 4; }

// Shared memory: the partial sums [kWarps][kMT][kNF][4][32] floats, then for SiluMulQuant the
// activation tile [8 kNF][128] floats.
template <int kNF, bool kSilu>
constexpr int smem_bytes() {
  return kWarps * (kSilu ? 2 : 1) * kNF * 4 * 32 * 4 + (kSilu ? 8 * kNF * kTileRows * 4 : 0);
}

template <int kNF, typename OutT, bool kSilu>
__global__ void __launch_bounds__(kThreads, (kNF >= 4 || (kSilu && kNF > 1)) ? 1 : 2)
    w8a8_decode_kernel(const W8A8DecodeParams p) {
  constexpr int kMT = kSilu ? 2 : 1, kDepth = depth<kNF, kMT>(), kXG = x_group<kNF>();
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int split = int(gridDim.y), part = int(blockIdx.y);
  const int64_t K = p.K, chunks = K / kChunk;
  const int c_begin = int(int64_t(part) * chunks / split), c_end = int(int64_t(part + 1) * chunks / split);
  const int64_t half = kSilu ? p.rows / 2 : p.rows;                       // rows of the gate (or only) set
  const int64_t tile_row = int64_t(blockIdx.x) * kTileRows + warp * 16;    // this warp's 16 rows of that set

  W8A8WeightStream<kMT, kDepth> ws;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = tile_row + g + 8 * h;
      ws.ok[mt][h] = r < half;
      ws.row[mt][h] = p.w + (mt * half + (ws.ok[mt][h] ? r : 0)) * K + 16 * t;
    }
    ws.scale[mt] = p.w_scale + (mt * half / 128 + blockIdx.x) * p.scale_ld;  // the block's rows share one scale row
  }
  ws.prologue(c_begin, c_end);

  griddep_wait();  // the activations come from the previous kernel
  griddep_launch_dependents();

  W8A8ContiguousTokens<kNF> tk;
  tk.x0 = p.xq + g * p.ldxq + 16 * t, tk.frag_stride = 8 * p.ldxq;
  tk.T = int(p.T), tk.g = g, tk.t = t;
  tk.xs = p.xs, tk.xs_ld = p.xs_ld;

  float acc[kMT][kNF][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nf][i] = 0.0f;
  w8a8_mainloop<kNF, kMT, kDepth, kXG>(acc, ws, tk, c_begin, c_end);

  // Accumulator element i of (mt, nf) at lane (g, t): row g + 8 (i / 2) of the warp's tile, token
  // nf * 8 + 2t + (i % 2).
  if (!kSilu && split == 1) {
    OutT* y = static_cast<OutT*>(p.y);
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t row = tile_row + g + 8 * (i / 2), tok = nf * 8 + 2 * t + (i % 2);
        if (row < p.rows && tok < p.T) y[tok * p.ldy + row] = from_f<OutT>(acc[0][nf][i]);
      }
    return;
  }

  // Partial sums of every warp: element index (((warp kMT + mt) kNF + nf) 4 + i) 32 + lane.
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) smem[(((warp * kMT + mt) * kNF + nf) * 4 + i) * 32 + lane] = acc[mt][nf][i];
  if (split > 1)
    cgr::this_cluster().sync();
  else
    __syncthreads();
  const int rank = split > 1 ? int(cgr::this_cluster().block_rank()) : 0;
  // The sum over the cluster's blocks of element e, in rank order.
  auto total = [&](int e) {
    if (split == 1) return smem[e];
    float sum = 0.0f;
    for (int b = 0; b < split; ++b) sum += cgr::this_cluster().map_shared_rank(smem, b)[e];
    return sum;
  };
  // Element of (block row r in [0, 128), token tok) in m tile mt.
  auto element = [&](int mt, int r, int tok) {
    const int w = r / 16, rr = r % 16, i = 2 * (rr / 8) + (tok & 1), ln = (rr % 8) * 4 + (tok % 8) / 2;
    return (((w * kMT + mt) * kNF + tok / 8) * 4 + i) * 32 + ln;
  };

  if constexpr (!kSilu) {
    OutT* y = static_cast<OutT*>(p.y);
    const int items = kTileRows * 8 * kNF;
    for (int it = rank * kThreads + int(threadIdx.x); it < items; it += split * kThreads) {
      const int tok = it / kTileRows, r = it % kTileRows;
      const int64_t row = int64_t(blockIdx.x) * kTileRows + r;
      if (tok < p.T && row < p.rows) y[tok * p.ldy + row] = from_f<OutT>(total(element(0, r, tok)));
    }
  } else {
    // Tokens tok with tok % split == rank: silu(gate) * up into the activation tile, then quantized.
    float* act = smem + kWarps * kMT * kNF * 4 * 32;  // [8 kNF][128]
    for (int it = int(threadIdx.x); it < 8 * kNF * kTileRows; it += kThreads) {
      const int tok = it / kTileRows, r = it % kTileRows;
      if (tok % split != rank || tok >= p.T) continue;
      const float gs = total(element(0, r, tok)), us = total(element(1, r, tok));
      act[it] = gs / (1.0f + __expf(-gs)) * us;
    }
    __syncthreads();
    // 16 threads per token, 8 columns each.
    const int sub = threadIdx.x % 16;
    const int64_t col0 = int64_t(blockIdx.x) * kTileRows + sub * 8;
    for (int tb = 0; tb < 8 * kNF; tb += kThreads / 16) {
      const int tok = tb + int(threadIdx.x) / 16;
      const bool mine = tok % split == rank && tok < p.pad_rows;
      const bool real = mine && tok < p.T;
      float v[8];
      float amax = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        v[j] = real ? act[tok * kTileRows + sub * 8 + j] : 0.0f;
        amax = fmaxf(amax, fabsf(v[j]));
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      if (!mine) continue;
      const float sc = real ? fp8_block_scale(amax) : 1.0f;
      const uint2 q = make_uint2(quant_e4m3x4(v[0], v[1], v[2], v[3], sc), quant_e4m3x4(v[4], v[5], v[6], v[7], sc));
      *reinterpret_cast<uint2*>(p.yq + int64_t(tok) * p.ldyq + col0) = q;
      if (sub == 0) p.ys[int64_t(blockIdx.x) * p.ys_ld + tok] = sc;
    }
  }
  if (split > 1) cgr::this_cluster().sync();  // every block's shared memory outlives the reads of it
}

template <int kNF, typename OutT, bool kSilu>
cudaError_t launch_typed(const W8A8DecodeParams& p, const W8A8DecodePlan& plan, cudaStream_t stream) {
  auto kernel = w8a8_decode_kernel<kNF, OutT, kSilu>;
  constexpr int smem = smem_bytes<kNF, kSilu>();
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(plan.blocks / plan.split), unsigned(plan.split), 1);
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  int n = 0;
  if (plan.split > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = 1;
    attr[n].val.clusterDim.y = unsigned(plan.split);
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (p.pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = unsigned(n);
  e = cudaLaunchKernelEx(&cfg, kernel, p);
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

template <int kNF>
cudaError_t launch_nf(const W8A8DecodeParams& p, const W8A8DecodePlan& plan, cudaStream_t stream) {
  if (p.epilogue == W8A8Epilogue::SiluMulQuant) {
    if constexpr (kNF <= 2) return launch_typed<kNF, bf16, true>(p, plan, stream);
    return cudaErrorInvalidValue;
  }
  return p.y_dtype == DType::F32 ? launch_typed<kNF, float, false>(p, plan, stream)
                                 : launch_typed<kNF, bf16, false>(p, plan, stream);
}

// The device's SMs and the blocks of one kernel variant an SM holds (queried once per device and
// variant; prepare_w8a8_decode runs the queries at load time, outside any graph capture).
struct Capacity {
  int sms = 132, per_sm = 1;
};

template <int kNF, typename OutT, bool kSilu>
Capacity capacity_of(cudaError_t* err = nullptr) {
  static std::atomic<int> cached[64][2];  // [device][sms, blocks per SM]
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return {};
  Capacity c;
  if (cached[dev][0].load(std::memory_order_acquire) == 0) {
    auto kernel = w8a8_decode_kernel<kNF, OutT, kSilu>;
    constexpr int smem = smem_bytes<kNF, kSilu>();
    c.sms = current_sm_count();
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&c.per_sm, kernel, kThreads, smem);
    if (e != cudaSuccess || c.per_sm <= 0) {
      if (err && e != cudaSuccess) *err = e;
      cudaGetLastError();
      c.per_sm = 1;
    }
    cached[dev][1].store(c.per_sm, std::memory_order_relaxed);
    cached[dev][0].store(c.sms, std::memory_order_release);
    return c;
  }
  c.sms = cached[dev][0].load(std::memory_order_acquire);
  c.per_sm = cached[dev][1].load(std::memory_order_relaxed);
  return c;
}

// Runs Fn<kNF, OutT, kSilu>::run(p) for the variant that takes p.
template <template <int, typename, bool> class Fn>
auto dispatch(const W8A8DecodeParams& p) {
  const bool silu = p.epilogue == W8A8Epilogue::SiluMulQuant, f32 = p.y_dtype == DType::F32;
  if (p.T <= 8) return silu ? Fn<1, bf16, true>::run(p) : f32 ? Fn<1, float, false>::run(p) : Fn<1, bf16, false>::run(p);
  if (p.T <= 16) return silu ? Fn<2, bf16, true>::run(p) : f32 ? Fn<2, float, false>::run(p) : Fn<2, bf16, false>::run(p);
  if (p.T <= 32) return f32 ? Fn<4, float, false>::run(p) : Fn<4, bf16, false>::run(p);
  return f32 ? Fn<8, float, false>::run(p) : Fn<8, bf16, false>::run(p);
}

template <int kNF, typename OutT, bool kSilu>
struct CapacityFn {
  static Capacity run(const W8A8DecodeParams&) { return capacity_of<kNF, OutT, kSilu>(); }
};

int64_t row_tiles_of(const W8A8DecodeParams& p) {
  const int64_t half = p.epilogue == W8A8Epilogue::SiluMulQuant ? p.rows / 2 : p.rows;
  return ceil_div(half, kTileRows);
}

W8A8DecodePlan plan_of(const W8A8DecodeParams& p) {
  const Capacity c = dispatch<CapacityFn>(p);
  return plan_w8a8_decode(row_tiles_of(p), p.K / kChunk, c.sms, int64_t(c.sms) * c.per_sm);
}

}  // namespace

W8A8DecodePlan plan_w8a8_decode(int64_t row_tiles, int64_t chunks, int sms, int64_t resident) {
  if (resident <= 0) resident = INT64_MAX;
  W8A8DecodePlan pl;
  for (int split = 1; split <= 8; split *= 2) {
    if (split > chunks) break;
    if (split > 1 && row_tiles * split > resident) break;  // a split is only worth it when every block is resident
    pl.split = split;
    if (row_tiles * split >= sms) break;
  }
  pl.blocks = row_tiles * pl.split;
  return pl;
}

cudaError_t prepare_w8a8_decode() {
  cudaError_t e = cudaSuccess;
  capacity_of<1, bf16, false>(&e), capacity_of<2, bf16, false>(&e), capacity_of<4, bf16, false>(&e);
  capacity_of<8, bf16, false>(&e), capacity_of<1, float, false>(&e), capacity_of<2, float, false>(&e);
  capacity_of<4, float, false>(&e), capacity_of<8, float, false>(&e), capacity_of<1, bf16, true>(&e);
  capacity_of<2, bf16, true>(&e);
  return e;
}

bool w8a8_decode_supported(const W8A8DecodeParams& p) {
  auto aligned = [](const void* q, int a) { return reinterpret_cast<uintptr_t>(q) % uintptr_t(a) == 0; };
  const bool base = p.xq && p.xs && p.w && p.w_scale && p.T >= 1 && p.T <= kW8A8DecodeMaxTokens && p.rows >= 1 &&
                    p.K >= kChunk && p.K % kChunk == 0 && p.ldxq >= p.K && p.ldxq % 16 == 0 && aligned(p.xq, 16) &&
                    aligned(p.w, 16) && aligned(p.xs, 8) && p.xs_ld % 2 == 0 && p.xs_ld >= (p.T + 7) / 8 * 8 &&
                    p.scale_ld >= p.K / kChunk;
  if (!base) return false;
  if (p.epilogue == W8A8Epilogue::Store)
    return p.y && p.ldy >= p.rows && (p.y_dtype == DType::BF16 || p.y_dtype == DType::F32);
  const int64_t inter = p.rows / 2;
  return p.T <= 16 && p.rows % 256 == 0 && p.yq && p.ys && p.ldyq >= inter && p.ldyq % 8 == 0 && aligned(p.yq, 8) &&
         p.pad_rows >= p.T && p.pad_rows <= (p.T + 7) / 8 * 8 && p.ys_ld >= p.pad_rows;
}

W8A8DecodePlan w8a8_decode_plan(const W8A8DecodeParams& p) {
  return w8a8_decode_supported(p) ? plan_of(p) : W8A8DecodePlan{};
}

cudaError_t launch_w8a8_decode(const W8A8DecodeParams& p, cudaStream_t stream) {
  if (!w8a8_decode_supported(p)) return cudaErrorInvalidValue;
  const W8A8DecodePlan plan = plan_of(p);
  if (plan.blocks / plan.split > 0x7fffffff) return cudaErrorInvalidValue;
  if (p.T <= 8) return launch_nf<1>(p, plan, stream);
  if (p.T <= 16) return launch_nf<2>(p, plan, stream);
  if (p.T <= 32) return launch_nf<4>(p, plan, stream);
  return launch_nf<8>(p, plan, stream);
}

}  // namespace dsserve::cuda
