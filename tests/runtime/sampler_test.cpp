// The per-request sampling state: the rows it builds for Backend::sample (bias merged, seen tokens
// distinct over prompt and output, output counts, stop tokens suppressed until min_new_tokens, the
// step), rows after a speculative path equal to the rows after accepting it, and the host
// log-probability helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "runtime/sampler.h"

namespace dsserve {
namespace {

std::set<int32_t> as_set(std::span<const int32_t> s) { return {s.begin(), s.end()}; }
std::map<int32_t, int32_t> as_map(std::span<const std::pair<int32_t, int32_t>> s) {
  std::map<int32_t, int32_t> m;
  for (auto& [t, n] : s) {
    EXPECT_EQ(m.count(t), 0u) << "token " << t << " listed twice";
    m[t] = n;
  }
  return m;
}

TEST(SamplingState, RowsCarryTheRequestsSettingsAndHistory) {
  SamplingParams p;
  p.temperature = 0.7f, p.top_k = 20, p.top_p = 0.9f, p.min_p = 0.05f;
  p.frequency_penalty = 0.5f, p.presence_penalty = 0.25f, p.repetition_penalty = 1.3f;
  p.min_new_tokens = 2;
  p.logit_bias = {{5, 1.0f}, {9, -2.0f}, {5, 0.5f}};
  const std::vector<int32_t> prompt{3, 4, 3, 8};
  SamplingState s(p, 42, prompt, {2, 7});

  SamplingRow r = s.row();
  EXPECT_EQ(r.temperature, 0.7f);
  EXPECT_EQ(r.top_k, 20);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_EQ(r.step, 0u);
  EXPECT_FALSE(r.want_logprob);
  ASSERT_EQ(r.logit_bias.size(), 2u) << "token 5 listed twice: one entry";
  EXPECT_EQ(r.logit_bias[0], (std::pair<int32_t, float>{5, 1.5f}));
  EXPECT_EQ(r.logit_bias[1], (std::pair<int32_t, float>{9, -2.0f}));
  EXPECT_EQ(r.seen.size(), 3u) << "distinct prompt tokens";
  EXPECT_EQ(as_set(r.seen), (std::set<int32_t>{3, 4, 8}));
  EXPECT_TRUE(r.output_counts.empty());
  EXPECT_EQ(as_set(r.suppressed), (std::set<int32_t>{2, 7}));

  s.accept(4);
  s.accept(11);
  s.accept(11);
  r = s.row();
  EXPECT_EQ(r.step, 3u);
  EXPECT_EQ(s.generated(), 3);
  EXPECT_EQ(as_set(r.seen), (std::set<int32_t>{3, 4, 8, 11}));
  EXPECT_EQ(r.seen.size(), 4u);
  EXPECT_EQ(as_map(r.output_counts), (std::map<int32_t, int32_t>{{4, 1}, {11, 2}}));
  EXPECT_TRUE(r.suppressed.empty()) << "min_new_tokens reached";
}

TEST(SamplingState, ListsAreLeftOutWhenTheirPenaltyIsOff) {
  SamplingParams p;  // no penalties
  SamplingState s(p, 1, std::vector<int32_t>{1, 2, 3}, {0});
  s.accept(5);
  SamplingRow r = s.row();
  EXPECT_TRUE(r.seen.empty());
  EXPECT_TRUE(r.output_counts.empty());
  EXPECT_TRUE(r.suppressed.empty());
  EXPECT_EQ(r.step, 1u);
}

TEST(SamplingState, RowAfterAPathIsTheRowAfterAcceptingIt) {
  SamplingParams p;
  p.frequency_penalty = 0.1f, p.repetition_penalty = 1.2f, p.min_new_tokens = 3;
  const std::vector<int32_t> prompt{1, 2};
  SamplingState s(p, 9, prompt, {0});
  s.accept(2);
  for (std::vector<int32_t> path : {std::vector<int32_t>{}, {2}, {6, 6}, {2, 7, 6}}) {
    SamplingRowLists lists;
    const SamplingRow after = s.row_after(path, lists);
    SamplingState accepted = s;
    for (int32_t t : path) accepted.accept(t);
    const SamplingRow want = accepted.row();
    EXPECT_EQ(after.step, want.step);
    EXPECT_EQ(as_set(after.seen), as_set(want.seen));
    EXPECT_EQ(after.seen.size(), want.seen.size());
    EXPECT_EQ(as_map(after.output_counts), as_map(want.output_counts));
    EXPECT_EQ(as_set(after.suppressed), as_set(want.suppressed)) << "path of " << path.size();
  }
}

TEST(SamplingState, HostLogprobHelpers) {
  const std::vector<float> l{0.5f, 2.0f, 2.0f, -1.0f};
  double s = 0;
  for (float v : l) s += std::exp(double(v));
  EXPECT_NEAR(token_logprob(l, 3), -1.0 - std::log(s), 1e-6);
  auto top = top_logprobs(l, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].second, 1);
  EXPECT_EQ(top[1].second, 2);
  EXPECT_EQ(top[2].second, 0);
}

}  // namespace
}  // namespace dsserve
