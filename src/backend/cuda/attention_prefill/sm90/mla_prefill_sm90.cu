// Expanded (non-absorbed) MLA attention for prefill on Hopper (sm_90a): causal attention with q/k
// head dim 192 (128 of k_nope per head + the shared 64 of k_pe) and v head dim 128. One block per
// (128-query tile, head, sequence): a producer warp brings Q once and K / V tiles of 128 keys through
// TMA into a two-stage ring of transaction barriers; two consumer warpgroups of 64 queries each run
// S = Q K^T and O += P V with wgmma, the product of the next tile in flight while the softmax of the
// current one runs, and the two warpgroups taking turns to issue their products so that one's softmax
// runs under the other's products (README.md).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/attention_prefill/mla_expanded.h"
#include "backend/cuda/common/device_props.h"
#include "backend/cuda/common/sm90/quad_reduce.cuh"
#include "backend/cuda/common/sm90/tensor_map.h"
#include "backend/cuda/common/sm90/tma_pipeline.cuh"
#include "backend/cuda/common/sm90/wgmma.cuh"
#include "backend/cuda/common/sm90/wgmma_sync.cuh"

namespace dsserve::cuda {
namespace {

using namespace sm90;

constexpr int kDn = 128, kDr = 64, kDqk = kDn + kDr, kDv = 128;
constexpr int kBlockM = 128, kBlockN = 128, kStages = 2, kThreads = 384;
constexpr int kChunkBytes = 128 * 128;  // [128 rows][64 bf16] swizzled
constexpr int kQChunks = kDqk / 64, kKChunks = kDqk / 64, kVChunks = kDv / 64;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kMinit = -1e30f;

constexpr int kQOff = 0;
constexpr int kKOff = kQOff + kQChunks * kChunkBytes;
constexpr int kVOff = kKOff + kStages * kKChunks * kChunkBytes;
constexpr int kBarOff = kVOff + kStages * kVChunks * kChunkBytes;
// barriers: q_full, k_full[2], v_full[2], k_empty[2], v_empty[2]
constexpr int kSmemBytes = kBarOff + 16 * 8 + 1024;
static_assert(kSmemBytes <= 232448, "the block's shared memory exceeds the sm_90 limit");

struct Maps {
  CUtensorMap q;     // [tokens][heads][192], box {64, 1, 128}
  CUtensorMap kv;    // [keys][heads][256], box {64, 1, 128}
  CUtensorMap k_pe;  // [keys][64], box {64, 128}
};


struct Work {
  int seq, head, q0, qlen, prefix, tok0, key0, ntiles;
};

// Blocks: query tiles fastest (the longest key ranges first), then heads: the blocks resident at
// once share a few heads' keys and values in L2.
__device__ __forceinline__ bool work_of(const MlaExpandedParams& p, int qtiles_max, Work& w) {
  const int qt_rev = blockIdx.x % unsigned(qtiles_max);
  w.head = blockIdx.x / unsigned(qtiles_max);
  w.seq = blockIdx.y;
  w.tok0 = p.query_start[w.seq];
  w.qlen = p.query_start[w.seq + 1] - w.tok0;
  const int qtiles = (w.qlen + kBlockM - 1) / kBlockM;
  if (qt_rev >= qtiles) return false;
  const int qt = qtiles - 1 - qt_rev;  // the longest key ranges first
  w.q0 = qt * kBlockM;
  w.prefix = p.seq_lens[w.seq] - w.qlen;
  w.key0 = p.key_start[w.seq];
  const int kend = w.prefix + min(w.qlen, w.q0 + kBlockM);  // keys [0, kend) are seen by some query
  w.ntiles = (kend + kBlockN - 1) / kBlockN;
  return true;
}

__global__ void __launch_bounds__(kThreads, 1)
    mla_prefill_sm90_kernel(const MlaExpandedParams p, const __grid_constant__ Maps maps, int qtiles_max) {
  extern __shared__ char smem_raw[];
  char* smem = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + kBarOff);
  uint64_t* q_full = bars;
  uint64_t* k_full = bars + 1;
  uint64_t* v_full = bars + 3;
  uint64_t* k_empty = bars + 5;
  uint64_t* v_empty = bars + 7;

  Work wk;
  if (!work_of(p, qtiles_max, wk)) return;
  const int tid = threadIdx.x, wg = __shfl_sync(0xffffffffu, tid >> 7, 0), wt = tid & 127;

  if (tid == 0) {
    mbar_init(q_full, 1);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(k_full + s, 1), mbar_init(v_full + s, 1);
      mbar_init(k_empty + s, 2), mbar_init(v_empty + s, 2);
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (wg == 0) {
    // Producer: one thread issues every copy.
    setmaxnreg_dec<40>();
    if (wt == 0) {
      tma_prefetch_map(&maps.q);
      tma_prefetch_map(&maps.kv);
      tma_prefetch_map(&maps.k_pe);
      mbar_arrive_expect_tx(q_full, kQChunks * kChunkBytes);
      for (int c = 0; c < kQChunks; ++c)
        tma_load_3d(smem + kQOff + c * kChunkBytes, &maps.q, 64 * c, wk.head, wk.tok0 + wk.q0, q_full);
      for (int j = 0; j < wk.ntiles; ++j) {
        const int s = j % kStages, use = j / kStages;
        const int krow = wk.key0 + j * kBlockN;
        if (use > 0) mbar_wait(k_empty + s, (use - 1) & 1);
        mbar_arrive_expect_tx(k_full + s, kKChunks * kChunkBytes);
        char* kdst = smem + kKOff + s * kKChunks * kChunkBytes;
        tma_load_3d(kdst, &maps.kv, 0, wk.head, krow, k_full + s);
        tma_load_3d(kdst + kChunkBytes, &maps.kv, 64, wk.head, krow, k_full + s);
        tma_load_2d(kdst + 2 * kChunkBytes, &maps.k_pe, 0, krow, k_full + s);
        if (use > 0) mbar_wait(v_empty + s, (use - 1) & 1);
        mbar_arrive_expect_tx(v_full + s, kVChunks * kChunkBytes);
        char* vdst = smem + kVOff + s * kVChunks * kChunkBytes;
        tma_load_3d(vdst, &maps.kv, kDn, wk.head, krow, v_full + s);
        tma_load_3d(vdst + kChunkBytes, &maps.kv, kDn + 64, wk.head, krow, v_full + s);
      }
    }
    return;
  }

  // Consumers: warpgroup c (0 or 1) owns query rows [64 c, 64 c + 64) of the tile.
  setmaxnreg_inc<232>();
  const int c = wg - 1, w = wt >> 5, lane = wt & 31, g = lane >> 2, t = lane & 3;
  const float qscale = p.scale * kLog2e;
  int qi[2];  // query index (within the sequence) of this thread's two rows
#pragma unroll
  for (int h = 0; h < 2; ++h) qi[h] = wk.q0 + 64 * c + 16 * w + g + 8 * h;
  // First key that some row of this warpgroup may not see: tiles from there on need the mask.
  const int mask_from_key = wk.prefix + wk.q0 + 64 * c;

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  float s[64];
  uint32_t pa[8][4];
  float m_run[2] = {kMinit, kMinit}, l_run[2] = {0.0f, 0.0f};
  const char* qbase = smem + kQOff + 64 * c * 128;  // this warpgroup's 64 rows of each Q chunk

  auto issue_qk = [&](int j) {
    const int st = j % kStages;
    mbar_wait(k_full + st, uint32_t((j / kStages) & 1));
    const char* kb = smem + kKOff + st * kKChunks * kChunkBytes;
    fence_regs(s);
    wgmma_fence();
#pragma unroll
    for (int ch = 0; ch < kKChunks; ++ch)
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        wgmma_m64n128k16_ss<0, 0>(s, sw128_desc(qbase + ch * kChunkBytes + 32 * ks, 0, 1024),
                                  sw128_desc(kb + ch * kChunkBytes + 32 * ks, 0, 1024), ch + ks > 0);
    wgmma_commit();
  };
  auto issue_pv = [&](int j) {
    const int st = j % kStages;
    mbar_wait(v_full + st, uint32_t((j / kStages) & 1));
    const char* vb = smem + kVOff + st * kVChunks * kChunkBytes;
    fence_regs(o);
    fence_regs(pa);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) wgmma_m64n128k16_rs<1>(o, pa[kk], sw128_desc(vb + 2048 * kk, kChunkBytes, 1024), 1);
    wgmma_commit();
  };
  // Softmax of tile j's scores: mask, new running max, P = exp2(S - m), returns the rescale factor.
  auto softmax = [&](int j, float (&scale)[2]) {
    const int kbase = j * kBlockN;
    const bool need_mask = kbase + kBlockN > mask_from_key + 1;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int jb = 0; jb < 16; ++jb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = s[4 * jb + e] * qscale;
        if (need_mask && kbase + 8 * jb + 2 * t + (e & 1) > wk.prefix + qi[e >> 1]) v = -INFINITY;
        s[4 * jb + e] = v;
        mx[e >> 1] = fmaxf(mx[e >> 1], v);
      }
    float m_new[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      m_new[h] = fmaxf(m_run[h], quad_max(mx[h]));
      scale[h] = exp2f(m_run[h] - m_new[h]);
      m_run[h] = m_new[h];
    }
#pragma unroll
    for (int jb = 0; jb < 16; ++jb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float v = exp2f(s[4 * jb + e] - m_new[e >> 1]);
        s[4 * jb + e] = v;
        sum[e >> 1] += v;
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) l_run[h] = l_run[h] * scale[h] + sum[h];
  };
  auto to_frags = [&]() {
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      pa[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
      pa[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
      pa[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
      pa[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
    }
  };
  auto release = [&](uint64_t* bar) {
    if (wt == 0) mbar_arrive(bar);
  };

  // Turns: a warpgroup issues its products only between its barrier and its arrival at the other's.
  const int my_turn = 1 + c, other_turn = 2 - c;
  if (c == 1) named_bar_arrive(1, 256);  // warpgroup 0 goes first
  mbar_wait(q_full, 0);
  float scale[2];
  named_bar_sync(my_turn, 256);
  issue_qk(0);
  named_bar_arrive(other_turn, 256);
  wgmma_wait<0>();
  fence_regs(s);
  release(k_empty + 0);
  softmax(0, scale);
  to_frags();
  for (int j = 1; j < wk.ntiles; ++j) {
    named_bar_sync(my_turn, 256);
    issue_qk(j);
    issue_pv(j - 1);
    named_bar_arrive(other_turn, 256);
    wgmma_wait<1>();  // S of tile j is in
    fence_regs(s);
    release(k_empty + j % kStages);
    softmax(j, scale);
    wgmma_wait<0>();  // P V of tile j - 1 is in
    fence_regs(o);
    fence_regs(pa);
    release(v_empty + (j - 1) % kStages);
#pragma unroll
    for (int jb = 0; jb < 16; ++jb) {
      o[4 * jb] *= scale[0], o[4 * jb + 1] *= scale[0];
      o[4 * jb + 2] *= scale[1], o[4 * jb + 3] *= scale[1];
    }
    to_frags();
  }
  named_bar_sync(my_turn, 256);
  issue_pv(wk.ntiles - 1);
  named_bar_arrive(other_turn, 256);
  if (c == 0) named_bar_sync(my_turn, 256);  // warpgroup 1's last arrival: every barrier ends even
  wgmma_wait<0>();
  fence_regs(o);
  fence_regs(pa);
  release(v_empty + (wk.ntiles - 1) % kStages);

  // O / l to BF16: out is [tokens, heads, 128] contiguous.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (qi[h] >= wk.qlen) continue;
    const float l = quad_sum(l_run[h]);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __nv_bfloat16* dst =
        static_cast<__nv_bfloat16*>(p.out) + (int64_t(wk.tok0 + qi[h]) * p.heads + wk.head) * kDv + 2 * t;
#pragma unroll
    for (int jb = 0; jb < 16; ++jb)
      *reinterpret_cast<uint32_t*>(dst + 8 * jb) = pack_bf16x2(o[4 * jb + 2 * h] * inv, o[4 * jb + 2 * h + 1] * inv);
  }
}

}  // namespace

bool mla_prefill_sm90_supports(const MlaExpandedParams& p) {
  if (!current_device_is_hopper()) return false;
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.dn == kDn && p.dr == kDr && p.dv == kDv && p.q_stride_t % 8 == 0 && p.q_stride_h % 8 == 0 &&
         p.kv_stride_k % 8 == 0 && p.kv_stride_h % 8 == 0 && p.k_pe_stride % 8 == 0 && aligned(p.q) && aligned(p.kv) &&
         aligned(p.k_pe) && p.num_tokens > 0 && p.num_keys > 0;
}

cudaError_t launch_mla_prefill_sm90(const MlaExpandedParams& p, cudaStream_t stream) {
  const int64_t num_keys = p.num_keys;
  if (!mla_prefill_sm90_supports(p)) return cudaErrorInvalidValue;
  Maps maps;
  TensorMapSpec q{};
  q.base = p.q, q.dtype = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, q.rank = 3;
  q.dims[0] = kDqk, q.dims[1] = uint64_t(p.heads), q.dims[2] = uint64_t(p.num_tokens);
  q.strides_bytes[0] = uint64_t(p.q_stride_h) * 2, q.strides_bytes[1] = uint64_t(p.q_stride_t) * 2;
  q.box[0] = 64, q.box[1] = 1, q.box[2] = kBlockM;
  TensorMapSpec kv{};
  kv.base = p.kv, kv.dtype = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, kv.rank = 3;
  kv.dims[0] = kDn + kDv, kv.dims[1] = uint64_t(p.heads), kv.dims[2] = uint64_t(num_keys);
  kv.strides_bytes[0] = uint64_t(p.kv_stride_h) * 2, kv.strides_bytes[1] = uint64_t(p.kv_stride_k) * 2;
  kv.box[0] = 64, kv.box[1] = 1, kv.box[2] = kBlockN;
  TensorMapSpec pe{};
  pe.base = p.k_pe, pe.dtype = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, pe.rank = 2;
  pe.dims[0] = kDr, pe.dims[1] = uint64_t(num_keys);
  pe.strides_bytes[0] = uint64_t(p.k_pe_stride) * 2;
  pe.box[0] = 64, pe.box[1] = kBlockN;
  for (auto [spec, map] : {std::pair{&q, &maps.q}, std::pair{&kv, &maps.kv}, std::pair{&pe, &maps.k_pe}})
    if (cudaError_t e = make_tensor_map(*spec, map); e != cudaSuccess) return e;
  auto kernel = mla_prefill_sm90_kernel;
  if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
      e != cudaSuccess)
    return e;
  // Query tiles of the longest sequence (or a bound: every extra token in one sequence); blocks past a
  // sequence's end exit.
  const int64_t max_qlen = p.max_qlen > 0 ? p.max_qlen : int64_t(p.num_tokens) - p.num_seqs + 1;
  const int64_t qtiles = (max_qlen + kBlockM - 1) / kBlockM;
  if (qtiles * p.heads > 0x7fffffff) return cudaErrorInvalidValue;
  dim3 grid(unsigned(qtiles * p.heads), unsigned(p.num_seqs));
  kernel<<<grid, kThreads, kSmemBytes, stream>>>(p, maps, int(qtiles));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
