// Grouped W8A8 expert products and the combine of the decode path (see moe_w8a8_grouped.h).
//
// A block is 8 warps on one work item and 128 weight rows (GateUp: 128 gate rows and the matching
// 128 up rows, so the block owns 128 intermediate columns), each warp one m16 tile (two) over all of
// K, all rows of the item; no split, no cross-warp sums. The item (expert, rows) comes from
// moe_align, the previous kernel, so the weight stream starts after griddepcontrol.wait. GateUp's
// epilogue forms silu(gate) * up in registers, gathers the block's 128 columns per row in shared
// memory and quantizes each row's 128 values (the down projection's input). Down's epilogue stores
// BF16 rows at their pair index, where the combine reads them.
#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/gemm/w8a8_mainloop.cuh"
#include "backend/cuda/moe/moe_w8a8_grouped.h"

namespace dsserve::cuda {

namespace {

constexpr int kWarps = 8, kThreads = 32 * kWarps, kTileRows = 16 * kWarps;

template <int kNF, int kMT>
constexpr int depth() {
  return kMT == 2 ? 2 : kNF == 1 ? 4 : 3;  // what fits the registers beside the accumulators
}

template <int kNF, bool kGateUp>
__global__ void __launch_bounds__(kThreads, kNF == 1 ? 2 : 1) moe_w8a8_kernel(const MoeW8A8Params p) {
  constexpr int kMT = kGateUp ? 2 : 1, kDepth = depth<kNF, kMT>(), kXG = kNF;
  constexpr int kR = 8 * kNF;
  __shared__ float act[kGateUp ? kR : 1][kTileRows + 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

  griddep_wait();  // the work items and the activations come from the previous kernels
  griddep_launch_dependents();

  if (p.experts_run && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0)
    atomicAdd(p.experts_run, static_cast<unsigned long long>(*p.num_active));
  const int64_t item = blockIdx.y;
  int64_t r0, r1;
  const uint8_t* W;
  const float* Ws;
  int64_t sld;
  if (item < p.max_items) {
    if (item >= *p.num_items) return;
    const MoeWorkItem it = p.items[item];
    r0 = it.row_begin, r1 = it.row_end;
    W = p.w + int64_t(it.expert) * p.N * p.K;
    Ws = p.w_scale + int64_t(it.expert) * (p.N / 128) * p.scale_ld;
    sld = p.scale_ld;
  } else {
    r0 = p.pairs + (item - p.max_items) * kR;
    r1 = min(r0 + kR, p.pairs + p.tokens);
    W = p.shared_w, Ws = p.shared_scale, sld = p.shared_scale_ld;
  }
  const int64_t half = kGateUp ? p.N / 2 : p.N, K = p.K;
  const int64_t tile_row = int64_t(blockIdx.x) * kTileRows + warp * 16;
  // Input row of item row r: its token (GateUp) or r itself (Down).
  auto input_row = [&](int64_t r) -> int64_t {
    if (!kGateUp) return r;
    return r < p.pairs ? p.sorted_pair[r] / p.top_k : r - p.pairs;
  };

  W8A8WeightStream<kMT, kDepth> ws;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = tile_row + g + 8 * h;
      ws.ok[mt][h] = r < half;
      ws.row[mt][h] = W + (mt * half + (ws.ok[mt][h] ? r : 0)) * K + 16 * t;
    }
    ws.scale[mt] = Ws + (mt * half / 128 + blockIdx.x) * sld;
  }
  const int chunks = int(K / 128);
  ws.prologue(0, chunks);

  W8A8Tokens<kNF> tk;
  tk.xs = p.xs, tk.xs_ld = p.xs_ld;
#pragma unroll
  for (int nf = 0; nf < kNF; ++nf) {
    const int64_t r = r0 + nf * 8 + g;
    tk.xrow[nf] = r < r1 ? p.xq + input_row(r) * p.ldxq + 16 * t : nullptr;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t rc = r0 + nf * 8 + 2 * t + j;
      tk.scol[nf][j] = rc < r1 ? int(input_row(rc)) : -1;
    }
  }
  float acc[kMT][kNF][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nf][i] = 0.0f;
  w8a8_mainloop<kNF, kMT, kDepth, kXG>(acc, ws, tk, 0, chunks);

  // Accumulator element i of (mt, nf) at lane (g, t): weight row g + 8 (i / 2) of the warp's tile,
  // item row nf * 8 + 2t + (i % 2).
  if constexpr (!kGateUp) {
    bf16* y = static_cast<bf16*>(p.y);
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t n = tile_row + g + 8 * (i / 2), r = r0 + nf * 8 + 2 * t + (i % 2);
        if (n < p.N && r < r1) {
          const int64_t dst = r < p.pairs ? p.sorted_pair[r] : r;
          y[dst * p.ldy + n] = __float2bfloat16_rn(acc[0][nf][i]);
        }
      }
  } else {
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float gs = acc[0][nf][i], us = acc[1][nf][i];
        act[nf * 8 + 2 * t + (i % 2)][warp * 16 + g + 8 * (i / 2)] = gs / (1.0f + __expf(-gs)) * us;
      }
    __syncthreads();
    // 16 threads per row, 8 columns each; the row's scale from the amax of its 128 columns.
    const int sub = threadIdx.x % 16;
    const int64_t col0 = int64_t(blockIdx.x) * kTileRows + sub * 8;
    for (int rb = 0; rb < kR; rb += kThreads / 16) {
      const int j = rb + int(threadIdx.x) / 16;
      const bool real = j < kR && r0 + j < r1;
      float v[8];
      float amax = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        v[e] = real ? act[j][sub * 8 + e] : 0.0f;
        amax = fmaxf(amax, fabsf(v[e]));
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      if (!real) continue;
      const float sc = fp8_block_scale(amax);
      const int64_t r = r0 + j;
      *reinterpret_cast<uint2*>(p.yq + r * p.ldyq + col0) =
          make_uint2(quant_e4m3x4(v[0], v[1], v[2], v[3], sc), quant_e4m3x4(v[4], v[5], v[6], v[7], sc));
      if (sub == 0) p.ys[int64_t(blockIdx.x) * p.ys_ld + r] = sc;
    }
  }
}

template <int kNF, bool kGateUp>
cudaError_t launch_typed(const MoeW8A8Params& p, cudaStream_t stream) {
  const int64_t half = kGateUp ? p.N / 2 : p.N;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(ceil_div(half, kTileRows)), unsigned(p.max_items + p.shared_items), 1);
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.pdl ? 1 : 0;
  cudaError_t e = cudaLaunchKernelEx(&cfg, moe_w8a8_kernel<kNF, kGateUp>, p);
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

template <bool kGateUp>
cudaError_t launch_kind(const MoeW8A8Params& p, cudaStream_t stream) {
  if (p.rows_per_item == 8) return launch_typed<1, kGateUp>(p, stream);
  return launch_typed<2, kGateUp>(p, stream);
}

constexpr int kCombineThreads = 128;

__global__ void __launch_bounds__(kCombineThreads) moe_combine_kernel(const MoeCombineParams p) {
  griddep_wait();
  griddep_launch_dependents();
  const int64_t t = blockIdx.y, c = (int64_t(blockIdx.x) * kCombineThreads + threadIdx.x) * 8;
  if (c >= p.hidden) return;
  const bf16* y = static_cast<const bf16*>(p.y);
  constexpr int kBatch = 8;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int k0 = 0; k0 < p.top_k; k0 += kBatch) {
    uint4 v[kBatch];
    float w[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int k = k0 + j;
      const int32_t row = k < p.top_k ? p.pair_row[t * p.top_k + k] : -1;
      w[j] = row >= 0 ? p.topk_weights[t * p.top_k + k] : 0.0f;
      v[j] = row >= 0 ? __ldg(reinterpret_cast<const uint4*>(y + int64_t(row) * p.hidden + c)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const bf16* e = reinterpret_cast<const bf16*>(&v[j]);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = fmaf(w[j], __bfloat162float(e[i]), acc[i]);
    }
  }
  if (p.shared) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(y + (p.pairs + t) * p.hidden + c));
    const bf16* e = reinterpret_cast<const bf16*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] += __bfloat162float(e[i]);
  }
  uint4 o;
  bf16* ob = reinterpret_cast<bf16*>(&o);
#pragma unroll
  for (int i = 0; i < 8; ++i) ob[i] = __float2bfloat16_rn(acc[i]);
  *reinterpret_cast<uint4*>(static_cast<bf16*>(p.out) + t * p.hidden + c) = o;
}

}  // namespace

bool moe_w8a8_supported(const MoeW8A8Params& p) {
  auto aligned = [](const void* q, int a) { return reinterpret_cast<uintptr_t>(q) % uintptr_t(a) == 0; };
  const bool base = p.xq && p.xs && p.w && p.w_scale && p.items && p.num_items && p.K >= 128 && p.K % 128 == 0 &&
                    p.N % 128 == 0 && p.ldxq >= p.K && p.ldxq % 16 == 0 && aligned(p.xq, 16) && aligned(p.w, 16) &&
                    (p.rows_per_item == 8 || p.rows_per_item == 16) &&
                    p.max_items + p.shared_items <= 65535 && p.scale_ld >= p.K / 128 &&
                    (p.shared_items == 0 || (p.shared_w && p.shared_scale && aligned(p.shared_w, 16) &&
                                             p.shared_scale_ld >= p.K / 128 &&
                                             p.shared_items * int64_t(p.rows_per_item) >= p.tokens)) &&
                    p.xs_ld >= (p.kind == MoeGemmKind::GateUp ? p.tokens : p.pairs + p.tokens);
  if (!base) return false;
  if (p.kind == MoeGemmKind::GateUp)
    return p.N % 256 == 0 && p.yq && p.ys && p.ldyq >= p.N / 2 && p.ldyq % 8 == 0 && aligned(p.yq, 8) &&
           p.ys_ld >= p.pairs + p.tokens;
  return p.y && p.ldy >= p.N;
}

cudaError_t launch_moe_w8a8(const MoeW8A8Params& p, cudaStream_t stream) {
  if (!moe_w8a8_supported(p)) return cudaErrorInvalidValue;
  if (p.max_items + p.shared_items == 0) return cudaSuccess;
  return p.kind == MoeGemmKind::GateUp ? launch_kind<true>(p, stream) : launch_kind<false>(p, stream);
}

cudaError_t launch_moe_combine(const MoeCombineParams& p, cudaStream_t stream) {
  if (p.tokens == 0) return cudaSuccess;
  if (p.hidden % 8 != 0 || reinterpret_cast<uintptr_t>(p.y) % 16 || reinterpret_cast<uintptr_t>(p.out) % 16)
    return cudaErrorInvalidValue;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(ceil_div(p.hidden / 8, kCombineThreads)), unsigned(p.tokens), 1);
  cfg.blockDim = dim3(kCombineThreads, 1, 1);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.pdl ? 1 : 0;
  cudaError_t e = cudaLaunchKernelEx(&cfg, moe_combine_kernel, p);
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
