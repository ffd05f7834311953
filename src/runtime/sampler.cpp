// Per-request sampling state and rows, host log-probabilities, validation (see sampler.h).
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

SamplingState::SamplingState(const SamplingParams& p, uint64_t seed, std::span<const int32_t> prompt,
                             std::vector<int32_t> stop_ids)
    : p_(p), seed_(seed), stop_ids_(std::move(stop_ids)),
      counts_used_(p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f),
      seen_used_(p.repetition_penalty != 1.0f) {
  for (auto& [id, bias] : p_.logit_bias) {
    auto it = std::find_if(bias_.begin(), bias_.end(), [&](auto& e) { return e.first == id; });
    if (it == bias_.end()) bias_.push_back({id, bias});
    else it->second += bias;
  }
  if (seen_used_)
    for (int32_t t : prompt)
      if (seen_set_.insert(t).second) seen_.push_back(t);
}

void SamplingState::accept(int32_t token) {
  ++generated_;
  if (counts_used_) {
    auto [it, fresh] = count_index_.emplace(token, counts_.size());
    if (fresh) counts_.push_back({token, 1});
    else ++counts_[it->second].second;
  }
  if (seen_used_ && seen_set_.insert(token).second) seen_.push_back(token);
}

SamplingRow SamplingState::base_row() const {
  SamplingRow r;
  r.temperature = p_.temperature;
  r.top_k = p_.top_k;
  r.top_p = p_.top_p;
  r.min_p = p_.min_p;
  r.frequency_penalty = p_.frequency_penalty;
  r.presence_penalty = p_.presence_penalty;
  r.repetition_penalty = p_.repetition_penalty;
  r.logit_bias = bias_;
  r.seed = seed_;
  return r;
}

SamplingRow SamplingState::row() const {
  SamplingRow r = base_row();
  r.output_counts = counts_;
  r.seen = seen_;
  if (generated_ < p_.min_new_tokens) r.suppressed = stop_ids_;
  r.step = uint64_t(generated_);
  return r;
}

SamplingRow SamplingState::row_after(std::span<const int32_t> path, SamplingRowLists& lists) const {
  SamplingRow r = base_row();
  const int generated = generated_ + int(path.size());
  if (counts_used_) {
    lists.output_counts = counts_;
    for (int32_t t : path) {
      auto it = count_index_.find(t);
      if (it != count_index_.end()) {
        ++lists.output_counts[it->second].second;
        continue;
      }
      auto added = std::find_if(lists.output_counts.begin() + ptrdiff_t(counts_.size()), lists.output_counts.end(),
                                [&](auto& e) { return e.first == t; });
      if (added == lists.output_counts.end()) lists.output_counts.push_back({t, 1});
      else ++added->second;
    }
    r.output_counts = lists.output_counts;
  }
  if (seen_used_) {
    lists.seen = seen_;
    for (int32_t t : path)
      if (!seen_set_.count(t) &&
          std::find(lists.seen.begin() + ptrdiff_t(seen_.size()), lists.seen.end(), t) == lists.seen.end())
        lists.seen.push_back(t);
    r.seen = lists.seen;
  }
  if (generated < p_.min_new_tokens) r.suppressed = stop_ids_;
  r.step = uint64_t(generated);
  return r;
}

}  // namespace dsserve
