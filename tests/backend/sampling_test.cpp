// Backend::sample on the CPU backend, the oracle of the sampling rules (backend/sampling_math.h):
// greedy is the argmax (lowest id on ties), penalties and bias in their order, suppression, the
// kept sets of temperature / top-k / top-p / min-p on crafted distributions (ties at a threshold
// kept), log-probabilities of the raw logits, reproducibility by (seed, step), and sampled
// frequencies against the truncated distribution (chi-square, fixed seeds: deterministic).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "backend/sampling_math.h"
#include "core/error.h"

namespace dsserve {
namespace {

CpuBackend& cpu() {
  static CpuBackend be;
  return be;
}

Tensor host_logits(const std::vector<std::vector<float>>& rows) {
  const int64_t R = int64_t(rows.size()), V = int64_t(rows[0].size());
  Tensor t = Tensor::zeros_host(DType::F32, {R, V});
  for (int64_t r = 0; r < R; ++r) std::copy(rows[r].begin(), rows[r].end(), t.ptr<float>() + r * V);
  return t;
}

SampledToken one(const std::vector<float>& logits, const SamplingRow& row) {
  return cpu().sample(host_logits({logits}), std::span(&row, 1))[0];
}

SamplingRow greedy() {
  SamplingRow r;
  r.temperature = 0;
  return r;
}

std::vector<float> log_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(float(std::log(v)));
  return l;
}

// The tokens seen over `draws` steps of one row (seed fixed, step 0, 1, ...), with their counts.
std::map<int32_t, int> draw_counts(const std::vector<float>& logits, SamplingRow row, int draws) {
  std::vector<SamplingRow> rows;
  for (int i = 0; i < draws; ++i) {
    row.step = uint64_t(i);
    rows.push_back(row);
  }
  std::vector<std::vector<float>> l(static_cast<size_t>(draws), logits);
  std::map<int32_t, int> counts;
  for (const SampledToken& t : cpu().sample(host_logits(l), rows)) counts[t.token]++;
  return counts;
}

std::set<int32_t> kept_set(const std::vector<float>& logits, SamplingRow row, int draws = 2000) {
  std::set<int32_t> s;
  for (auto& [t, n] : draw_counts(logits, row, draws)) s.insert(t);
  return s;
}

TEST(Sampling, GreedyIsTheArgmaxWithTheLowestIdOnTies) {
  EXPECT_EQ(one({1, 3, 3, 2}, greedy()).token, 1);
  EXPECT_EQ(one({0, 0, 0, 0}, greedy()).token, 0);
  EXPECT_EQ(one({NAN, -INFINITY, 0.5f}, greedy()).token, 2) << "NaN counts as -inf";
  EXPECT_EQ(one({-0.0f, 0.0f}, greedy()).token, 0) << "-0 and +0 tie";
  EXPECT_EQ(one({-INFINITY, -INFINITY}, greedy()).token, 0);
  SamplingRow hot;
  hot.temperature = 1;
  EXPECT_EQ(one({-INFINITY, -INFINITY, -INFINITY}, hot).token, 0) << "nothing to sample: the argmax";
  hot.top_k = 1;
  EXPECT_EQ(one({0.1f, 4.0f, 2.0f}, hot).token, 1) << "top_k 1 keeps only the best";
}

TEST(Sampling, PenaltiesAndBiasApplyInTheirOrder) {
  SamplingRow r = greedy();
  const std::vector<std::pair<int32_t, float>> bias{{0, 1.5f}};
  r.logit_bias = bias;
  EXPECT_EQ(one({1, 2, 0}, r).token, 0) << "bias raises token 0 to 2.5";

  const std::vector<int32_t> seen0{0}, seen1{1};
  r = greedy();
  r.repetition_penalty = 2;
  r.seen = seen0;
  EXPECT_EQ(one({1.0f, 0.9f}, r).token, 1) << "a positive logit is divided: 0.5";
  EXPECT_EQ(one({-1.0f, -1.5f}, r).token, 1) << "a negative logit is multiplied: -2";
  r.repetition_penalty = 0.5f;
  r.seen = seen1;
  EXPECT_EQ(one({-1.0f, -1.5f}, r).token, 1) << "a penalty below 1 favours: -0.75";

  const std::vector<std::pair<int32_t, int32_t>> three_times{{0, 3}}, once{{0, 1}};
  r = greedy();
  r.frequency_penalty = 0.1f;
  r.output_counts = three_times;
  EXPECT_EQ(one({1.0f, 0.9f}, r).token, 1) << "1 - 0.1 x 3 = 0.7";
  r.frequency_penalty = 0.02f;
  EXPECT_EQ(one({1.0f, 0.9f}, r).token, 0) << "1 - 0.02 x 3 = 0.94";
  r = greedy();
  r.presence_penalty = 0.2f;
  r.output_counts = once;
  EXPECT_EQ(one({1.0f, 0.9f}, r).token, 1) << "1 - 0.2 = 0.8";
  r.presence_penalty = -0.2f;
  r.output_counts = once;
  EXPECT_EQ(one({0.8f, 0.9f}, r).token, 0) << "a negative presence penalty favours: 1.0";

  // Bias first, then the repetition penalty: 0.5 - 1 = -0.5, then x 2 = -1.0 < -0.9. (The other
  // order would give 0.25 - 1 = -0.75 > -0.9.)
  const std::vector<std::pair<int32_t, float>> minus_one{{0, -1.0f}};
  r = greedy();
  r.logit_bias = minus_one;
  r.repetition_penalty = 2;
  r.seen = seen0;
  EXPECT_EQ(one({0.5f, -0.9f}, r).token, 1);
}

TEST(Sampling, SuppressedTokensAreNeverChosen) {
  const std::vector<int32_t> stop{1};
  SamplingRow r = greedy();
  r.suppressed = stop;
  EXPECT_EQ(one({1, 5, 2}, r).token, 2);
  r.temperature = 1;
  EXPECT_EQ(kept_set({1, 5, 2}, r, 500), (std::set<int32_t>{0, 2}));
}

TEST(Sampling, KeptSetsOfTopKTopPMinPAndTemperature) {
  const std::vector<float> l = log_of({0.4, 0.3, 0.2, 0.1});
  SamplingRow r;
  r.seed = 7;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1, 2, 3}));
  r.top_k = 2;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1}));
  r.top_k = 4;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1, 2, 3})) << "top_k = vocab: no cut";
  r = SamplingRow{};
  r.top_p = 0.65f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1})) << "0.4 + 0.3 reaches 0.65";
  r.top_p = 0.75f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1, 2}));
  r.top_p = 0.3f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0}));
  r = SamplingRow{};
  r.min_p = 0.6f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1})) << "p >= 0.24";
  r.min_p = 0.3f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1, 2})) << "p >= 0.12";
  // Temperature 0.5 squares the odds: [0.533, 0.3, 0.133, 0.033].
  r = SamplingRow{};
  r.temperature = 0.5f;
  r.top_p = 0.65f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1}));
  r.top_p = 0.5f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0}));
  r.top_p = 1.0f;
  r.min_p = 0.2f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0, 1, 2})) << "odds >= 0.2 x 0.533 at temperature 0.5";
  // top_p works on the top-k-renormalised distribution: [0.571, 0.429] reaches 0.5 with one token.
  r = SamplingRow{};
  r.top_k = 2;
  r.top_p = 0.5f;
  EXPECT_EQ(kept_set(l, r), (std::set<int32_t>{0}));
}

TEST(Sampling, TiesAtAThresholdAreKeptWhole) {
  SamplingRow r;
  r.top_k = 2;
  EXPECT_EQ(kept_set({2, 1, 1, 0}, r), (std::set<int32_t>{0, 1, 2})) << "both tokens tied with the 2nd";
  r = SamplingRow{};
  r.top_p = 0.3f;
  EXPECT_EQ(kept_set({1, 1, 0, 0}, r), (std::set<int32_t>{0, 1})) << "the first token reaches 0.3; its tie stays";
}

TEST(Sampling, LogprobsAreLogSoftmaxOfTheRawLogits) {
  std::mt19937 g(3);
  std::normal_distribution<float> n(0.0f, 2.0f);
  std::vector<float> l(50);
  for (float& v : l) v = n(g);
  l[7] = l[12] = l[30] = 9.0f;  // a three-way tie at the top
  double m = *std::max_element(l.begin(), l.end()), s = 0;
  for (float v : l) s += std::exp(double(v) - m);
  const double lse = m + std::log(s);

  const std::vector<std::pair<int32_t, float>> bias{{3, 50.0f}};
  SamplingRow r;
  r.temperature = 0.3f;
  r.logit_bias = bias;  // changes the choice, not the logprobs
  r.want_logprob = true;
  r.top_logprobs = 5;
  const SampledToken t = one(l, r);
  EXPECT_EQ(t.token, 3);
  EXPECT_NEAR(t.logprob, l[3] - lse, 1e-5);
  ASSERT_EQ(t.top_logprobs.size(), 5u);
  EXPECT_EQ(t.top_logprobs[0].second, 7);
  EXPECT_EQ(t.top_logprobs[1].second, 12);
  EXPECT_EQ(t.top_logprobs[2].second, 30);
  std::vector<int32_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(t.top_logprobs[i].second, order[i]);
    EXPECT_NEAR(t.top_logprobs[i].first, l[order[i]] - lse, 1e-5);
  }
  r.top_logprobs = 80;
  EXPECT_EQ(one(l, r).top_logprobs.size(), 50u) << "at most the vocabulary";
  r.top_logprobs = 0;
  EXPECT_TRUE(one(l, r).top_logprobs.empty());
}

TEST(Sampling, SameSeedAndStepSameTokenInAnyBatch) {
  const std::vector<float> flat(16, 0.0f);
  SamplingRow r;
  r.seed = 1234;
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 200; ++step) {
    r.step = step;
    const int32_t alone = one(flat, r).token;
    seen.insert(alone);
    // The same row among others, in another place: the same token.
    SamplingRow other = r;
    other.seed = step * 31;
    std::vector<SamplingRow> rows{other, r, other};
    auto batch = cpu().sample(host_logits({flat, flat, flat}), rows);
    EXPECT_EQ(batch[1].token, alone) << "step " << step;
  }
  EXPECT_GE(seen.size(), 14u) << "200 steps of a flat 16-token distribution visit nearly every token";
  std::vector<int32_t> a, b;
  for (uint64_t step = 0; step < 20; ++step) {
    SamplingRow x = r, y = r;
    x.step = y.step = step;
    y.seed = r.seed + 1;  // n > 1 parallel samples take consecutive seeds
    a.push_back(one(flat, x).token);
    b.push_back(one(flat, y).token);
  }
  EXPECT_NE(a, b);
}

TEST(Sampling, StridedRowsGiveTheSameTokens) {
  std::mt19937 g(5);
  std::normal_distribution<float> n(0.0f, 1.0f);
  Tensor wide = Tensor::zeros_host(DType::F32, {4, 40});
  for (int64_t i = 0; i < wide.numel(); ++i) wide.ptr<float>()[i] = n(g);
  Tensor view = wide.slice(1, 3, 33);
  std::vector<std::vector<float>> packed(4);
  for (int r = 0; r < 4; ++r) packed[r].assign(wide.ptr<float>() + r * 40 + 3, wide.ptr<float>() + r * 40 + 33);
  std::vector<SamplingRow> rows(4);
  for (int i = 0; i < 4; ++i) rows[size_t(i)].seed = uint64_t(i), rows[size_t(i)].top_p = 0.9f;
  auto a = cpu().sample(view, rows), b = cpu().sample(host_logits(packed), rows);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a[size_t(i)].token, b[size_t(i)].token);
}

// Chi-square of observed counts against probabilities (tokens with probability 0 must not appear).
double chi_square(const std::map<int32_t, int>& counts, const std::vector<double>& p, int draws, int* dof) {
  double chi = 0;
  *dof = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    const auto it = counts.find(int32_t(i));
    const double seen = it == counts.end() ? 0 : it->second;
    if (p[i] == 0) {
      EXPECT_EQ(seen, 0) << "token " << i << " is outside the kept set";
      continue;
    }
    const double want = p[i] * draws;
    chi += (seen - want) * (seen - want) / want;
    ++*dof;
  }
  return chi;
}

TEST(Sampling, FrequenciesFollowTheTruncatedDistribution) {
  // 8 tokens, 40000 draws per setting; the expected distribution computed here in double from the
  // definitions (no ties). Critical values of chi-square at a false-alarm rate of 0.1%.
  const double critical[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
  const std::vector<float> l{1.2f, -0.3f, 0.7f, 2.1f, -1.5f, 0.1f, 1.9f, -0.6f};
  struct Setting {
    float temperature;
    int top_k;
    float top_p, min_p;
  };
  for (const Setting& s : {Setting{1.0f, -1, 1.0f, 0.0f}, Setting{0.7f, 5, 1.0f, 0.0f}, Setting{1.3f, -1, 0.8f, 0.0f},
                           Setting{1.0f, 6, 0.9f, 0.0f}, Setting{1.0f, -1, 1.0f, 0.25f}, Setting{0.5f, 4, 0.95f, 0.1f}}) {
    std::vector<int32_t> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    const size_t k = s.top_k > 0 ? size_t(s.top_k) : l.size();
    std::vector<double> p(l.size(), 0.0);
    double z = 0;
    for (size_t i = 0; i < k; ++i) z += (p[order[i]] = std::exp((l[order[i]] - l[order[0]]) / s.temperature));
    double mass = 0;
    size_t keep = k;
    for (size_t i = 0; i < k; ++i)
      if ((mass += p[order[i]] / z) >= s.top_p) {
        keep = i + 1;
        break;
      }
    for (size_t i = 0; i < l.size(); ++i) {
      const size_t rank = size_t(std::find(order.begin(), order.end(), int32_t(i)) - order.begin());
      if (rank >= keep || p[i] < s.min_p * p[order[0]]) p[i] = 0;
    }
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    for (double& v : p) v /= total;

    SamplingRow r;
    r.temperature = s.temperature, r.top_k = s.top_k, r.top_p = s.top_p, r.min_p = s.min_p;
    r.seed = 99;
    const int draws = 40000;
    int dof = 0;
    const double chi = chi_square(draw_counts(l, r, draws), p, draws, &dof);
    ASSERT_GE(dof, 1);
    EXPECT_LT(chi, critical[dof]) << "temperature " << s.temperature << " top_k " << s.top_k << " top_p " << s.top_p
                                  << " min_p " << s.min_p << ", " << dof << " degrees of freedom";
  }
}

TEST(Sampling, RowsOutOfRangeAreRefused) {
  const std::vector<int32_t> bad{5};
  SamplingRow r;
  r.suppressed = bad;
  EXPECT_THROW(one({0, 1, 2}, r), Error);
  r = SamplingRow{};
  r.top_logprobs = sampling::kMaxTopLogprobs + 1;
  EXPECT_THROW(one({0, 1, 2}, r), Error);
  r = SamplingRow{};
  r.top_p = 0;
  EXPECT_THROW(one({0, 1, 2}, r), Error);
  std::vector<SamplingRow> two(2);
  EXPECT_THROW(cpu().sample(host_logits({{0, 1, 2}}), two), Error) << "one row of logits for two rows";
}

TEST(SamplingMath, WeightsKeysAndRandomBits) {
  using namespace sampling;
  EXPECT_EQ(exp2_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(exp2_nonpositive(-65.0f), 0.0f);
  EXPECT_EQ(exp2_nonpositive(NAN), 0.0f);
  for (float y = -63.9f; y <= 0.0f; y += 0.0137f)
    EXPECT_NEAR(exp2_nonpositive(y) / std::exp2(double(y)), 1.0, 3e-7) << "y = " << y;
  EXPECT_EQ(token_weight(3.0f, 3.0f, exponent_scale(0.7f)), kWeightOne);
  EXPECT_EQ(token_weight(-INFINITY, 3.0f, exponent_scale(0.7f)), 0u);
  EXPECT_NEAR(double(token_weight(2.0f, 3.0f, exponent_scale(1.0f))) / double(kWeightOne), std::exp(-1.0), 1e-6);
  const float ordered[] = {-INFINITY, -1e30f, -2.5f, -1e-40f, 0.0f, 1e-40f, 1.0f, 3e38f, INFINITY};
  for (size_t i = 0; i + 1 < std::size(ordered); ++i) EXPECT_LT(order_key(ordered[i]), order_key(ordered[i + 1]));
  EXPECT_EQ(order_key(-0.0f), order_key(0.0f));
  EXPECT_EQ(order_key(NAN), kMinusInfinityKey);
  EXPECT_EQ(order_key(-INFINITY), kMinusInfinityKey);
  EXPECT_EQ(top_p_target(0.5f, 10), 5u);
  EXPECT_EQ(top_p_target(0.51f, 10), 6u);
  EXPECT_EQ(top_p_target(1e-9f, 10), 1u);
  EXPECT_EQ(min_weight(1.0f), kWeightOne);
  EXPECT_NE(random_bits(1, 0), random_bits(1, 1));
  EXPECT_NE(random_bits(1, 0), random_bits(2, 0));
  EXPECT_LT(scale_random(~uint64_t(0), 7), 7u);
  EXPECT_EQ(scale_random(0, 7), 0u);
}

}  // namespace
}  // namespace dsserve
