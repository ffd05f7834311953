// The arithmetic of token choice (Backend::sample) that the CPU oracle and the CUDA kernel share,
// compiled for the host and, under nvcc, for the device, so that both backends choose the same
// token for the same inputs. Every float operation that decides a token is one IEEE operation
// rounded once (add_rn, mul_rn, ...: on the device the compiler may not fuse them into FMAs; the
// host files using this header are built with -ffp-contract=off); exponentials are a polynomial of
// our own rather than the platform's expf; probability masses are sums of integer weights, so their
// order of summation does not matter.
//
// The rules (see SamplingRow in backend.h):
// - Adjusted logits: raw logit (NaN counts as -inf) + logit_bias; repetition penalty over the
//   seen tokens (positive values divided by it, the others multiplied); frequency and presence
//   penalties over the output tokens (minus frequency x count + presence); suppressed tokens -inf;
//   tokens outside the row's allowed mask (constrained decoding) -inf.
// - Greedy (temperature 0, or every adjusted logit -inf): the largest adjusted logit among the
//   allowed tokens, lowest id on ties.
// - Sampling: tokens are ordered by order_key of their adjusted logit. top_k keeps every token whose
//   key is at least the k-th largest key (all tokens tied with the k-th are kept). Each kept token
//   gets the integer weight token_weight = floor(2^40 x 2^((l - max) x log2(e) / temperature)) (the
//   best token exactly 2^40). top_p keeps the tokens whose key is at least t, t the largest key with
//   (weight of the tokens with key >= t) >= top_p_target(top_p, total weight after top_k): the
//   smallest set of best tokens holding top_p of the mass, with the whole tie group at its edge.
//   min_p keeps weights >= min_weight(min_p) (= min_p x the best token's weight). The token is then
//   drawn by inverse CDF in token-id order: r = scale_random(random_bits(seed, step), kept total),
//   the first token whose cumulative kept weight exceeds r.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// Host copies are internal to each file (static), so each is compiled with its own file's flags:
// the CPU backend's, without FMA contraction, is never exchanged for another file's at link time.
#ifdef __CUDACC__
#define DS_HOST_DEVICE static __host__ __device__ __forceinline__
#else
#define DS_HOST_DEVICE static inline
#endif

namespace dsserve::sampling {

// Token weights are fixed point with 40 fractional bits: the best token weighs 2^40, a token below
// 2^-40 of it weighs 0 (never drawn). A vocabulary of up to 2^23 tokens sums below 2^64.
constexpr int kWeightBits = 40;
constexpr uint64_t kWeightOne = uint64_t(1) << kWeightBits;
// The most (logprob, id) pairs a row may ask for.
constexpr int kMaxTopLogprobs = 1024;

// The valid range of each sampling parameter: requests (SamplingParams::validate) and rows
// (check_sampling_rows) are checked against these.
inline bool valid_temperature(float t) { return std::isfinite(t) && t >= 0; }
inline bool valid_top_p(float p) { return p > 0 && p <= 1; }
inline bool valid_top_k(int k) { return k >= -1; }
inline bool valid_min_p(float p) { return p >= 0 && p <= 1; }
inline bool valid_penalty(float p) { return p >= -2 && p <= 2; }             // frequency, presence
inline bool valid_repetition_penalty(float p) { return p > 0 && p <= 2; }
inline bool valid_logit_bias(float b) { return b >= -100 && b <= 100; }

// One IEEE float operation, rounded to nearest even, never contracted with its neighbours.
DS_HOST_DEVICE float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DS_HOST_DEVICE float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DS_HOST_DEVICE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DS_HOST_DEVICE float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

DS_HOST_DEVICE uint32_t float_bits(float v) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(v);
#else
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
#endif
}
DS_HOST_DEVICE float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, 4);
  return v;
#endif
}

// A raw logit as sampling sees it: NaN counts as -inf.
DS_HOST_DEVICE float clean_logit(float v) { return v != v ? -INFINITY : v; }

// An unsigned key with the order of the float values (NaN ranks as -inf, -0 as +0): a > b exactly
// when key(a) > key(b).
DS_HOST_DEVICE uint32_t order_key(float v) {
  v = clean_logit(v);
  const uint32_t u = float_bits(v == 0.0f ? 0.0f : v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
constexpr uint32_t kMinusInfinityKey = ~0xFF800000u;  // order_key(-inf): nothing real ranks lower

// Penalties, one token at a time, in the order the rules list them.
DS_HOST_DEVICE float apply_repetition(float v, float penalty) {
  return v > 0.0f ? div_rn(v, penalty) : mul_rn(v, penalty);
}
DS_HOST_DEVICE float apply_frequency_presence(float v, float frequency, float presence, int32_t count) {
  return sub_rn(v, add_rn(mul_rn(frequency, float(count)), presence));
}

DS_HOST_DEVICE float round_to_integer(float v) {  // nearest integer, ties to even
#ifdef __CUDA_ARCH__
  return rintf(v);
#else
  return std::nearbyint(v);
#endif
}

// 2^y for y <= 0 (0 below -64, and for NaN): 2^j x p(y - j) with j = rint(y) and p the degree-6
// Taylor polynomial of 2^f on [-0.5, 0.5] (relative error below 2e-7). exp2_nonpositive(0) == 1.
DS_HOST_DEVICE float exp2_nonpositive(float y) {
  if (!(y >= -64.0f)) return 0.0f;
  if (y > 0.0f) y = 0.0f;
  const float j = round_to_integer(y);
  const float f = sub_rn(y, j);  // exact
  float p = 1.5403530393381606e-4f;
  p = add_rn(mul_rn(p, f), 1.3333558146428443e-3f);
  p = add_rn(mul_rn(p, f), 9.6181291076284772e-3f);
  p = add_rn(mul_rn(p, f), 5.5504108664821580e-2f);
  p = add_rn(mul_rn(p, f), 2.4022650695910071e-1f);
  p = add_rn(mul_rn(p, f), 6.9314718055994531e-1f);
  p = add_rn(mul_rn(p, f), 1.0f);
  return mul_rn(p, bits_float(uint32_t(127 + int(j)) << 23));  // times 2^j, j in [-64, 0]: exact
}

// log2(e) / temperature: the factor from (logit - max) to the exponent of 2 (temperature > 0).
DS_HOST_DEVICE float exponent_scale(float temperature) { return div_rn(1.4426950408889634f, temperature); }

// The integer weight of a token with adjusted logit v when the best is `max`.
DS_HOST_DEVICE uint64_t token_weight(float v, float max, float scale) {
  if (v == max) return kWeightOne;  // the best token (also when max is +inf)
  const float w = exp2_nonpositive(mul_rn(sub_rn(clean_logit(v), max), scale));
  return uint64_t(mul_rn(w, 1099511627776.0f));  // x 2^40 (exact), truncated
}

DS_HOST_DEVICE double ceil_double(double v) {
#ifdef __CUDA_ARCH__
  return ::ceil(v);
#else
  return std::ceil(v);
#endif
}

// The mass top_p must reach: ceil(top_p x total), at least 1 and at most total.
DS_HOST_DEVICE uint64_t top_p_target(float top_p, uint64_t total) {
  const double t = ceil_double(double(top_p) * double(total));
  const uint64_t c = t <= 1.0 ? uint64_t(1) : uint64_t(t);
  return c > total ? total : c;
}

// The smallest weight min_p keeps: ceil(min_p x 2^40).
DS_HOST_DEVICE uint64_t min_weight(float min_p) { return uint64_t(ceil_double(double(min_p) * double(kWeightOne))); }

// Whether token t is allowed by a mask (null: every token).
DS_HOST_DEVICE bool token_allowed(const uint32_t* allowed, int64_t t) {
  return allowed == nullptr || ((allowed[t >> 5] >> (t & 31)) & 1u) != 0;
}

// SplitMix64's finaliser.
DS_HOST_DEVICE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 64 random bits for one token choice: a hash of the request's seed and the step (the index of the
// token in its output). Independent of the row's place in the batch.
DS_HOST_DEVICE uint64_t random_bits(uint64_t seed, uint64_t step) {
  return mix64(mix64(seed) + (step + 1) * 0x9E3779B97F4A7C15ull);
}

// floor(bits x total / 2^64): a number in [0, total).
DS_HOST_DEVICE uint64_t scale_random(uint64_t bits, uint64_t total) {
#ifdef __CUDA_ARCH__
  return __umul64hi(bits, total);
#else
  return uint64_t((static_cast<unsigned __int128>(bits) * total) >> 64);
#endif
}

}  // namespace dsserve::sampling
