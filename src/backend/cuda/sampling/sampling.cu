// Token choice kernel (see sampling.h; the rules are backend/sampling_math.h's, shared with the
// CPU oracle). One block of kThreads per row. Every pass over the row is a block-strided loop
// (coalesced reads); the penalties write a working copy of the row when the row has lists;
// thresholds come from radix selection over order keys, one byte per pass, through a shared
// histogram of integer weights; the draw walks the kept weights in token-id order, each warp owning
// a contiguous segment of ids. Integer sums make every decision independent of summation order.
// A constrained row's allowed-token bitmask (uploaded with the lists) makes every other token -inf
// wherever the row is read, and keeps those tokens out of the argmax.
#include <climits>

#include "backend/cuda/common/device_utils.cuh"
#include "backend/cuda/sampling/sampling.h"
#include "backend/sampling_math.h"

namespace dsserve::cuda {

namespace {

using namespace ::dsserve::sampling;
using u64 = unsigned long long;

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

struct TopEntry {
  uint32_t key;
  int32_t id;
  float value;
};

// Shared memory of one block. Each helper below starts with a barrier before it writes here and
// ends with one before it reads what others wrote.
struct Shared {
  u64 hist[256];
  u64 warp_u64[kWarps];
  float warp_m[kWarps], warp_s[kWarps];
  uint32_t warp_key[kWarps];
  int32_t warp_id[kWarps];
  TopEntry top[kMaxTopLogprobs];
  uint32_t selected_prefix;
  u64 selected_above;
  int32_t pick_warp;
  u64 pick_rest;
  int32_t picked;
  int32_t top_count;
};

// ---------------------------------------------------------------- block reductions

__device__ __forceinline__ u64 warp_sum_u64(u64 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Per-warp sums of v, in s.warp_u64 (every thread may read them after the call).
__device__ void warp_totals(u64 v, Shared& s) {
  v = warp_sum_u64(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s.warp_u64[threadIdx.x >> 5] = v;
  __syncthreads();
}

__device__ u64 block_sum_u64(u64 v, Shared& s) {
  warp_totals(v, s);
  u64 t = 0;
  for (int w = 0; w < kWarps; ++w) t += s.warp_u64[w];
  return t;
}

// (key, id) order of the argmax: larger key first, then lower id.
__device__ __forceinline__ void keep_better(uint32_t& key, int32_t& id, uint32_t k2, int32_t i2) {
  if (k2 > key || (k2 == key && i2 < id)) key = k2, id = i2;
}

__device__ void block_argmax(uint32_t& key, int32_t& id, Shared& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint32_t k2 = __shfl_xor_sync(kFull, key, o);
    const int32_t i2 = __shfl_xor_sync(kFull, id, o);
    keep_better(key, id, k2, i2);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s.warp_key[threadIdx.x >> 5] = key, s.warp_id[threadIdx.x >> 5] = id;
  __syncthreads();
  key = s.warp_key[0], id = s.warp_id[0];
  for (int w = 1; w < kWarps; ++w) keep_better(key, id, s.warp_key[w], s.warp_id[w]);
}

// Running log-sum-exp as (max m, sum s of exp(x - m)); (-inf, 0) is empty.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  if (s2 == 0.0f) return;
  if (s == 0.0f) {
    m = m2, s = s2;
  } else if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * expf(m2 - m);
  }
}

// log(sum exp) over the block, from each thread's (m, s); every thread gets it.
__device__ float block_lse(float m, float sum, Shared& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_down_sync(kFull, m, o), s2 = __shfl_down_sync(kFull, sum, o);
    lse_merge(m, sum, m2, s2);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s.warp_m[threadIdx.x >> 5] = m, s.warp_s[threadIdx.x >> 5] = sum;
  __syncthreads();
  m = -INFINITY, sum = 0.0f;
  for (int w = 0; w < kWarps; ++w) lse_merge(m, sum, s.warp_m[w], s.warp_s[w]);
  return m + logf(sum);
}

// ---------------------------------------------------------------- selection and the draw

// The largest key t with (sum of the weights of the elements whose key >= t) >= target, where
// key_weight(i, key) gives element i's weight and sets its key; the total weight must reach target.
// Four passes, one byte of t per pass from the top: a histogram of the weights of the elements that
// match the bytes chosen so far, then warp 0 finds the byte where the weight from the top crosses.
template <class KeyWeight>
__device__ uint32_t radix_select(int64_t V, u64 target, KeyWeight key_weight, Shared& s) {
  uint32_t prefix = 0;  // the bytes of t chosen so far, in place
  u64 above = 0;        // weight of the elements above every key that starts with `prefix`
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    __syncthreads();
    for (int b = threadIdx.x; b < 256; b += kThreads) s.hist[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      uint32_t key;
      const u64 w = key_weight(i, key);
      if (w == 0 || (pass > 0 && (key >> (shift + 8)) != (prefix >> (shift + 8)))) continue;
      atomicAdd(&s.hist[(key >> shift) & 255u], w);
    }
    __syncthreads();
    if (threadIdx.x < 32) {  // lane l holds bins [8l, 8l + 8)
      const int lane = int(threadIdx.x);
      u64 mine = 0;
      for (int b = 0; b < 8; ++b) mine += s.hist[lane * 8 + b];
      u64 suffix = mine;  // weight of the bins of lanes >= lane
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const u64 t = __shfl_down_sync(kFull, suffix, o);
        if (lane + o < 32) suffix += t;
      }
      const unsigned reach = __ballot_sync(kFull, above + suffix >= target);
      const int l = reach ? 31 - __clz(int(reach)) : 0;
      if (lane == l) {
        u64 cum = above + suffix - mine;  // weight of the bins above this lane's
        int b = lane * 8 + 7;
        for (; b > lane * 8; --b) {
          if (cum + s.hist[b] >= target) break;
          cum += s.hist[b];
        }
        s.selected_prefix = prefix | (uint32_t(b) << shift);
        s.selected_above = cum;
      }
    }
    __syncthreads();
    prefix = s.selected_prefix;
    above = s.selected_above;
  }
  return prefix;
}

// Ids [begin, end) of this warp's segment: consecutive ids, a multiple of 32 per warp.
__device__ __forceinline__ void warp_segment(int64_t V, int64_t& begin, int64_t& end) {
  const int64_t per_warp = ceil_div(ceil_div(V, kWarps), 32) * 32;
  begin = int64_t(threadIdx.x >> 5) * per_warp;
  end = begin + per_warp < V ? begin + per_warp : V;
}

// Inverse CDF in token-id order: the first id whose cumulative weight exceeds
// scale_random(bits, total weight). The total must be positive.
template <class Weight>
__device__ int32_t pick_token(int64_t V, Weight weight, uint64_t bits, Shared& s) {
  const int lane = int(threadIdx.x & 31), warp = int(threadIdx.x >> 5);
  int64_t begin, end;
  warp_segment(V, begin, end);
  u64 mine = 0;
  for (int64_t i = begin + lane; i < end; i += 32) mine += weight(i);
  warp_totals(mine, s);
  if (threadIdx.x == 0) {
    u64 total = 0;
    for (int w = 0; w < kWarps; ++w) total += s.warp_u64[w];
    const u64 r = scale_random(bits, total);
    u64 before = 0;
    int w = 0;
    while (w + 1 < kWarps && before + s.warp_u64[w] <= r) before += s.warp_u64[w++];
    s.pick_warp = w;
    s.pick_rest = r - before;
    s.picked = -1;
  }
  __syncthreads();
  if (warp == s.pick_warp) {
    const u64 rest = s.pick_rest;
    u64 before = 0;
    for (int64_t base = begin; base < end; base += 32) {
      const int64_t i = base + lane;
      u64 incl = i < end ? weight(i) : 0;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const u64 t = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += t;
      }
      const unsigned hit = __ballot_sync(kFull, before + incl > rest);
      if (hit) {
        if (lane == __ffs(int(hit)) - 1) s.picked = int32_t(i);
        break;
      }
      before += __shfl_sync(kFull, incl, 31);
    }
  }
  __syncthreads();
  return s.picked;
}

// The token drawn from the kept set (see the rules); `best` holds the largest adjusted logit.
template <class Value>
__device__ int32_t draw(Value value, int64_t V, const SampleRowDesc& d, int32_t best, Shared& s) {
  const float max = value(best), scale = exponent_scale(d.temperature);
  uint32_t k_min = 0;
  if (d.top_k > 0 && d.top_k < V) {
    auto count = [&](int64_t i, uint32_t& key) -> u64 {
      key = order_key(value(i));
      return 1;
    };
    k_min = radix_select(V, u64(d.top_k), count, s);
  }
  auto weight = [&](int64_t i, uint32_t& key) -> u64 {
    const float v = value(i);
    key = order_key(v);
    return key >= k_min ? token_weight(v, max, scale) : 0;
  };
  uint32_t p_min = 0;
  if (d.top_p < 1.0f) {
    u64 mine = 0;
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      uint32_t key;
      mine += weight(i, key);
    }
    p_min = radix_select(V, top_p_target(d.top_p, block_sum_u64(mine, s)), weight, s);
  }
  const u64 w_min = d.min_p > 0.0f ? min_weight(d.min_p) : 0;
  auto kept = [&](int64_t i) -> u64 {
    uint32_t key;
    const u64 w = weight(i, key);
    return key >= p_min && w >= w_min ? w : 0;
  };
  return pick_token(V, kept, random_bits(d.seed, d.step), s);
}

// ---------------------------------------------------------------- lists and log-probabilities

// Applies the row's lists to its working copy, each list a phase (tokens are distinct within the
// bias, seen and count lists, so no two threads write one element within a phase).
__device__ void apply_lists(const SampleRowDesc& d, const int32_t* ints, float* work) {
  __syncthreads();  // the copy is complete
  for (int j = threadIdx.x; j < d.bias_count; j += kThreads) {
    const int32_t t = ints[d.bias_start + j];
    work[t] = add_rn(work[t], __int_as_float(ints[d.bias_start + d.bias_count + j]));
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d.seen_count; j += kThreads) {
    const int32_t t = ints[d.seen_start + j];
    work[t] = apply_repetition(work[t], d.repetition_penalty);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d.counts_count; j += kThreads) {
    const int32_t t = ints[d.counts_start + j];
    work[t] = apply_frequency_presence(work[t], d.frequency_penalty, d.presence_penalty,
                                       ints[d.counts_start + d.counts_count + j]);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d.suppressed_count; j += kThreads) work[ints[d.suppressed_start + j]] = -INFINITY;
  __syncthreads();
}

// The n best raw logits as (logprob, id) into out[0, n), best first, ties lower id first: the n-th
// largest key by radix selection, the keys above it, then the lowest ids tied with it.
template <typename T>
__device__ void top_logprobs(const T* raw, int64_t V, int n, float lse, TopLogprob* out, Shared& s) {
  auto count = [&](int64_t i, uint32_t& key) -> u64 {
    key = order_key(to_f(raw[i]));
    return 1;
  };
  const uint32_t t = radix_select(V, u64(n), count, s);
  __syncthreads();
  if (threadIdx.x == 0) s.top_count = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = to_f(raw[i]);
    const uint32_t key = order_key(v);
    if (key > t) s.top[atomicAdd(&s.top_count, 1)] = {key, int32_t(i), v};
  }
  __syncthreads();
  const int above = s.top_count;  // fewer than n
  const u64 need = u64(n - above);
  int64_t begin, end;
  warp_segment(V, begin, end);
  const int lane = int(threadIdx.x & 31), warp = int(threadIdx.x >> 5);
  u64 ties = 0;
  for (int64_t i = begin + lane; i < end; i += 32) ties += order_key(to_f(raw[i])) == t;
  warp_totals(ties, s);
  u64 before = 0;  // ties in the segments of lower warps
  for (int w = 0; w < warp; ++w) before += s.warp_u64[w];
  for (int64_t base = begin; base < end && before < need; base += 32) {
    const int64_t i = base + lane;
    const float v = i < end ? to_f(raw[i]) : 0.0f;
    const bool tie = i < end && order_key(v) == t;
    const unsigned ballot = __ballot_sync(kFull, tie);
    const u64 rank = before + u64(__popc(ballot & ((1u << lane) - 1u)));
    if (tie && rank < need) s.top[above + int(rank)] = {t, int32_t(i), v};
    before += u64(__popc(ballot));
  }
  __syncthreads();
  if (int(threadIdx.x) < n) {
    const TopEntry e = s.top[threadIdx.x];
    int rank = 0;
    for (int j = 0; j < n; ++j) rank += s.top[j].key > e.key || (s.top[j].key == e.key && s.top[j].id < e.id);
    out[rank] = {e.value - lse, e.id};
  }
}

// ---------------------------------------------------------------- the kernel

template <typename T>
__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  __shared__ Shared s;
  const int64_t V = p.vocab, row = blockIdx.x;
  const SampleRowDesc& d = p.desc[row];  // read where used (L1): fewer registers
  const T* raw = static_cast<const T*>(p.logits) + row * p.logits_stride;
  float* work = d.work_row >= 0 ? p.work + int64_t(d.work_row) * V : nullptr;
  const uint32_t* mask = d.mask_start >= 0 ? reinterpret_cast<const uint32_t*>(p.ints + d.mask_start) : nullptr;
  const bool want_lse = d.want_logprob || d.top_logprobs > 0;

  // The working copy the lists modify, and the raw logits' log-sum-exp.
  float m = -INFINITY, sum = 0.0f;
  if (work || want_lse) {
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      const float v = to_f(raw[i]);
      if (work) work[i] = token_allowed(mask, i) ? clean_logit(v) : -INFINITY;
      if (want_lse && v != -INFINITY) lse_merge(m, sum, v, 1.0f);
    }
  }
  const float lse = want_lse ? block_lse(m, sum, s) : 0.0f;
  if (work) apply_lists(d, p.ints, work);
  auto value = [&](int64_t i) -> float {
    if (work) return work[i];
    return token_allowed(mask, i) ? clean_logit(to_f(raw[i])) : -INFINITY;
  };

  // The best token: the greedy choice, and the reference of the weights.
  uint32_t best_key = 0;
  int32_t best = INT_MAX;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const uint32_t key = order_key(value(i));
    if (key > best_key && token_allowed(mask, i)) best_key = key, best = int32_t(i);
  }
  block_argmax(best_key, best, s);
  int32_t token = best;
  if (d.temperature > 0.0f && best_key != kMinusInfinityKey) token = draw(value, V, d, best, s);

  const int n = d.top_logprobs < V ? d.top_logprobs : int(V);
  if (n > 0) top_logprobs(raw, V, n, lse, p.top + row * p.top_stride, s);
  if (threadIdx.x == 0) p.results[row] = {token, want_lse ? to_f(raw[token]) - lse : 0.0f, n, 0};
}

// ---------------------------------------------------------------- greedy rows over many blocks

constexpr int kSplitThreads = 256;

// Block (c, row): the best (key, id) and the raw log-sum-exp terms (m, s) of the row's ids
// [c chunk, (c + 1) chunk).
template <typename T>
__global__ void __launch_bounds__(kSplitThreads) greedy_partial_kernel(SampleParams p, GreedyPartial* partial,
                                                                       int64_t chunk) {
  __shared__ GreedyPartial warp_best[kSplitThreads / 32];
  const int64_t row = blockIdx.y, begin = int64_t(blockIdx.x) * chunk, end = min(p.vocab, begin + chunk);
  const T* raw = static_cast<const T*>(p.logits) + row * p.logits_stride;
  const bool want_lse = p.desc[row].want_logprob != 0;
  uint32_t key = 0;
  int32_t id = INT_MAX;
  float m = -INFINITY, sum = 0.0f;
  for (int64_t i = begin + threadIdx.x; i < end; i += kSplitThreads) {
    const float v = to_f(raw[i]);
    keep_better(key, id, order_key(clean_logit(v)), int32_t(i));
    if (want_lse && v != -INFINITY) lse_merge(m, sum, v, 1.0f);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    keep_better(key, id, __shfl_xor_sync(kFull, key, o), __shfl_xor_sync(kFull, id, o));
    const float m2 = __shfl_down_sync(kFull, m, o), s2 = __shfl_down_sync(kFull, sum, o);
    lse_merge(m, sum, m2, s2);
  }
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = {key, id, m, sum};
  __syncthreads();
  if (threadIdx.x == 0) {
    GreedyPartial b = warp_best[0];
    for (int w = 1; w < kSplitThreads / 32; ++w) {
      keep_better(b.key, b.id, warp_best[w].key, warp_best[w].id);
      lse_merge(b.m, b.s, warp_best[w].m, warp_best[w].s);
    }
    partial[row * gridDim.x + blockIdx.x] = b;
  }
}

// One warp per row: the chunks' partials merged in a fixed order.
template <typename T>
__global__ void greedy_finish_kernel(SampleParams p, const GreedyPartial* partial, int chunks) {
  const int64_t row = blockIdx.x;
  const int lane = threadIdx.x;
  uint32_t key = 0;
  int32_t id = INT_MAX;
  float m = -INFINITY, sum = 0.0f;
  for (int c = lane; c < chunks; c += 32) {
    const GreedyPartial& q = partial[row * chunks + c];
    keep_better(key, id, q.key, q.id);
    lse_merge(m, sum, q.m, q.s);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    keep_better(key, id, __shfl_xor_sync(kFull, key, o), __shfl_xor_sync(kFull, id, o));
    const float m2 = __shfl_down_sync(kFull, m, o), s2 = __shfl_down_sync(kFull, sum, o);
    lse_merge(m, sum, m2, s2);
  }
  if (lane == 0) {
    const T* raw = static_cast<const T*>(p.logits) + row * p.logits_stride;
    const bool want = p.desc[row].want_logprob != 0;
    p.results[row] = {id, want ? to_f(raw[id]) - (m + logf(sum)) : 0.0f, 0, 0};
  }
}

}  // namespace

bool sample_greedy_split_applies(int64_t rows, int64_t vocab) { return rows >= 1 && rows <= 32 && vocab >= 8192; }
int sample_greedy_split_chunks(int64_t vocab) { return int(ceil_div(vocab, 4096)); }

cudaError_t launch_sample_greedy_split(const SampleParams& p, GreedyPartial* partial, cudaStream_t stream) {
  if (!sample_greedy_split_applies(p.rows, p.vocab)) return cudaErrorInvalidValue;
  const int chunks = sample_greedy_split_chunks(p.vocab);
  const int64_t chunk = ceil_div(p.vocab, chunks);
  DS_DISPATCH_FLOAT(p.dtype, T, {
    greedy_partial_kernel<T><<<dim3(unsigned(chunks), unsigned(p.rows)), kSplitThreads, 0, stream>>>(p, partial, chunk);
    greedy_finish_kernel<T><<<unsigned(p.rows), 32, 0, stream>>>(p, partial, chunks);
  });
  return cudaGetLastError();
}

cudaError_t launch_sample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.vocab <= 0 || p.vocab > INT_MAX) return cudaErrorInvalidValue;
  DS_DISPATCH_FLOAT(p.dtype, T, sample_kernel<T><<<unsigned(p.rows), kThreads, 0, stream>>>(p));
  return cudaGetLastError();
}

}  // namespace dsserve::cuda
