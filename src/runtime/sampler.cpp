// Token choice and log-probabilities (see sampler.h).
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dsserve {

namespace {
double log_sum_exp(std::span<const float> x) {
  float m = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (float v : x) s += std::exp(double(v) - m);
  return m + std::log(s);
}
}  // namespace

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

float token_logprob(std::span<const float> logits, int32_t id) { return float(logits[id] - log_sum_exp(logits)); }

std::vector<std::pair<float, int32_t>> top_logprobs(std::span<const float> logits, int k) {
  k = std::min<int>(k, int(logits.size()));
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  double lse = log_sum_exp(logits);
  std::vector<std::pair<float, int32_t>> out;
  for (int i = 0; i < k; ++i) out.push_back({float(logits[idx[i]] - lse), idx[i]});
  return out;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature <= 0.0f) return argmax(logits);
  float m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> w(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) w[i] = std::exp((double(logits[i]) - m) / p_.temperature);
  std::discrete_distribution<int32_t> dist(w.begin(), w.end());
  return dist(rng_);
}

}  // namespace dsserve
