// CPU backend: token choice (Backend::sample), the oracle of the rules in backend/sampling_math.h,
// written as their definitions: thresholds by nth_element and sorting, weights summed in token
// order; rows split over a few threads. Built with -ffp-contract=off (src/CMakeLists.txt) so its
// float arithmetic is the CUDA kernel's, operation by operation.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/sampling_math.h"
#include "core/error.h"

namespace dsserve {

namespace {

using namespace sampling;

// The adjusted logits of one row: raw, then bias, repetition, frequency / presence, suppression.
std::vector<float> adjusted_logits(const float* raw, int64_t V, const SamplingRow& r) {
  std::vector<float> l(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) l[size_t(i)] = clean_logit(raw[i]);
  for (auto& [t, b] : r.logit_bias) l[size_t(t)] = add_rn(l[size_t(t)], b);
  for (int32_t t : r.seen) l[size_t(t)] = apply_repetition(l[size_t(t)], r.repetition_penalty);
  for (auto& [t, n] : r.output_counts)
    l[size_t(t)] = apply_frequency_presence(l[size_t(t)], r.frequency_penalty, r.presence_penalty, n);
  for (int32_t t : r.suppressed) l[size_t(t)] = -INFINITY;
  if (!r.allowed.empty())
    for (int64_t i = 0; i < V; ++i)
      if (!token_allowed(r.allowed.data(), i)) l[size_t(i)] = -INFINITY;
  return l;
}

// Draws from the kept tokens (see the rules); `best` is the id of the largest adjusted logit.
int32_t draw(const std::vector<float>& l, size_t best, const SamplingRow& r) {
  const size_t V = l.size();
  const float max = l[best], scale = exponent_scale(r.temperature);
  std::vector<uint32_t> key(V);
  for (size_t i = 0; i < V; ++i) key[i] = order_key(l[i]);

  uint32_t k_min = 0;  // top_k: the k-th largest key
  if (r.top_k > 0 && size_t(r.top_k) < V) {
    std::vector<uint32_t> sorted = key;
    std::nth_element(sorted.begin(), sorted.begin() + (r.top_k - 1), sorted.end(), std::greater<>());
    k_min = sorted[size_t(r.top_k - 1)];
  }
  std::vector<uint64_t> w(V, 0);
  for (size_t i = 0; i < V; ++i)
    if (key[i] >= k_min) w[i] = token_weight(l[i], max, scale);

  uint32_t p_min = 0;  // top_p: the key where the mass of the best tokens reaches the target
  if (r.top_p < 1.0f) {
    const uint64_t target = top_p_target(r.top_p, std::accumulate(w.begin(), w.end(), uint64_t(0)));
    std::vector<uint32_t> order;
    for (size_t i = 0; i < V; ++i)
      if (w[i] > 0) order.push_back(uint32_t(i));
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return key[a] > key[b]; });
    uint64_t mass = 0;
    for (uint32_t i : order)
      if ((mass += w[i]) >= target) {
        p_min = key[i];
        break;
      }
  }
  const uint64_t w_min = r.min_p > 0.0f ? min_weight(r.min_p) : 0;
  for (size_t i = 0; i < V; ++i)
    if (key[i] < p_min || w[i] < w_min) w[i] = 0;

  const uint64_t total = std::accumulate(w.begin(), w.end(), uint64_t(0));  // >= 2^40: the best is kept
  const uint64_t pick = scale_random(random_bits(r.seed, r.step), total);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < V; ++i)
    if ((cumulative += w[i]) > pick) return int32_t(i);
  return int32_t(best);  // not reached
}

SampledToken sample_row(const float* raw, int64_t V, const SamplingRow& r) {
  const std::vector<float> l = adjusted_logits(raw, V, r);
  const uint32_t* allowed = r.allowed.empty() ? nullptr : r.allowed.data();
  size_t best = 0;  // largest key among allowed tokens, lowest id on ties
  while (!token_allowed(allowed, int64_t(best))) ++best;  // check_sampling_rows: one is allowed
  for (size_t i = best + 1; i < l.size(); ++i)
    if (order_key(l[i]) > order_key(l[best]) && token_allowed(allowed, int64_t(i))) best = i;
  SampledToken out;
  const bool greedy = r.temperature <= 0.0f || order_key(l[best]) == kMinusInfinityKey;
  out.token = greedy ? int32_t(best) : draw(l, best, r);

  if (!r.want_logprob && r.top_logprobs == 0) return out;
  const float m = *std::max_element(raw, raw + V);
  double s = 0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(double(raw[i]) - m);
  const double lse = m + std::log(s);
  out.logprob = float(raw[out.token] - lse);
  const int n = int(std::min<int64_t>(r.top_logprobs, V));
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) {
    const uint32_t ka = order_key(raw[a]), kb = order_key(raw[b]);
    return ka > kb || (ka == kb && a < b);
  });
  for (int i = 0; i < n; ++i) out.top_logprobs.push_back({float(raw[idx[size_t(i)]] - lse), idx[size_t(i)]});
  return out;
}

}  // namespace

std::vector<SampledToken> CpuBackend::sample(const Tensor& logits, std::span<const SamplingRow> rows) {
  DS_CHECK(logits.device() == Device::CPU && logits.dtype() == DType::F32 && logits.ndim() == 2 &&
               logits.stride(1) == 1,
           "sample: expected host F32 logits [rows, vocab] with contiguous columns, found {} {}",
           dtype_name(logits.dtype()), logits.shape().str());
  DS_CHECK(logits.size(0) == int64_t(rows.size()), "sample: {} rows of logits for {} sampling rows", logits.size(0),
           rows.size());
  const int64_t V = logits.size(1);
  DS_CHECK(V > 0, "sample: empty vocabulary");
  check_sampling_rows(rows, V);
  // Rows are independent: a few threads share them (each row's result is the same either way).
  std::vector<SampledToken> out(rows.size());
  auto run = [&](size_t begin, size_t step) {
    for (size_t i = begin; i < rows.size(); i += step)
      out[i] = sample_row(logits.ptr<float>() + int64_t(i) * logits.stride(0), V, rows[i]);
  };
  const size_t threads = std::min<size_t>({rows.size() / 4, std::max(1u, std::thread::hardware_concurrency()), 8});
  std::vector<std::thread> workers;
  for (size_t t = 1; t < threads; ++t) workers.emplace_back(run, t, threads);
  run(0, std::max<size_t>(threads, 1));
  for (auto& w : workers) w.join();
  return out;
}

}  // namespace dsserve
