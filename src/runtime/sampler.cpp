// Token choice and log-probabilities (see sampler.h).
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

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
  k = std::max(0, std::min<int>(k, int(logits.size())));
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  double lse = log_sum_exp(logits);
  std::vector<std::pair<float, int32_t>> out;
  for (int i = 0; i < k; ++i) out.push_back({float(logits[idx[i]] - lse), idx[i]});
  return out;
}

void validate_sampling_params(const SamplingParams& p, int vocab_size) {
  DS_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "temperature must be >= 0, found {}", p.temperature);
  DS_CHECK(p.top_p > 0 && p.top_p <= 1, "top_p must be in (0, 1], found {}", p.top_p);
  DS_CHECK(p.top_k >= -1, "top_k must be -1 (all) or positive, found {}", p.top_k);
  DS_CHECK(p.min_p >= 0 && p.min_p <= 1, "min_p must be in [0, 1], found {}", p.min_p);
  DS_CHECK(p.frequency_penalty >= -2 && p.frequency_penalty <= 2, "frequency_penalty must be in [-2, 2], found {}",
           p.frequency_penalty);
  DS_CHECK(p.presence_penalty >= -2 && p.presence_penalty <= 2, "presence_penalty must be in [-2, 2], found {}",
           p.presence_penalty);
  DS_CHECK(p.repetition_penalty > 0 && p.repetition_penalty <= 2, "repetition_penalty must be in (0, 2], found {}",
           p.repetition_penalty);
  DS_CHECK(p.max_new_tokens >= 0, "max_new_tokens must be >= 0, found {}", p.max_new_tokens);
  DS_CHECK(p.min_new_tokens >= 0, "min_new_tokens must be >= 0, found {}", p.min_new_tokens);
  for (auto& [id, bias] : p.logit_bias)
    DS_CHECK(id >= 0 && id < vocab_size && std::isfinite(bias) && bias >= -100 && bias <= 100,
             "logit_bias: token {} with bias {} (expected a token in [0, {}) and a bias in [-100, 100])", id, bias,
             vocab_size);
  for (int32_t id : p.stop_token_ids)
    DS_CHECK(id >= 0 && id < vocab_size, "stop_token_ids: {} is outside the vocabulary [0, {})", id, vocab_size);
}

Sampler::Sampler(const SamplingParams& p, uint64_t seed, std::span<const int32_t> prompt, std::vector<int32_t> stop_ids)
    : p_(p), rng_(seed), stop_ids_(std::move(stop_ids)) {
  if (p_.repetition_penalty != 1.0f)
    for (int32_t t : prompt)
      if (seen_set_.emplace(t, 1).second) seen_.push_back(t);
}

void Sampler::accept(int32_t token) {
  ++generated_;
  ++output_counts_[token];
  if (p_.repetition_penalty != 1.0f && seen_set_.emplace(token, 1).second) seen_.push_back(token);
}

int32_t Sampler::sample(std::vector<float>& l) {
  for (auto& [id, bias] : p_.logit_bias) l[id] += bias;
  if (p_.repetition_penalty != 1.0f)
    for (int32_t t : seen_) l[t] = l[t] > 0 ? l[t] / p_.repetition_penalty : l[t] * p_.repetition_penalty;
  if (p_.frequency_penalty != 0.0f || p_.presence_penalty != 0.0f)
    for (auto& [t, n] : output_counts_) l[t] -= p_.frequency_penalty * float(n) + p_.presence_penalty;
  if (generated_ < p_.min_new_tokens)
    for (int32_t t : stop_ids_) l[t] = -INFINITY;
  if (p_.temperature <= 0.0f) return argmax(l);

  // Candidates sorted by logit; cut by top_k, then softmax over them with the temperature.
  std::vector<int32_t> idx(l.size());
  std::iota(idx.begin(), idx.end(), 0);
  size_t k = p_.top_k > 0 ? std::min<size_t>(size_t(p_.top_k), l.size()) : l.size();
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  idx.resize(k);
  std::vector<double> prob(k);
  double m = l[idx[0]], sum = 0;
  for (size_t i = 0; i < k; ++i) sum += (prob[i] = std::exp((double(l[idx[i]]) - m) / p_.temperature));
  for (double& q : prob) q /= sum;
  // top_p: the smallest prefix whose mass reaches top_p; min_p: drop tokens below min_p x best.
  size_t keep = k;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) { keep = i + 1; break; }
    }
  }
  if (p_.min_p > 0.0f)
    while (keep > 1 && prob[keep - 1] < p_.min_p * prob[0]) --keep;
  std::discrete_distribution<size_t> dist(prob.begin(), prob.begin() + keep);
  return idx[dist(rng_)];
}

}  // namespace dsserve
