// Backend::sample on the CUDA backend against the CPU oracle on fresh random logits: the V3
// vocabulary (129280) and a small odd one (517), batches of 1 to 256, each row with its own mix of
// temperature (0 included), top_k, top_p, min_p, penalties, bias, suppressed tokens, seeds, steps
// and log-probabilities asked for. Logits are BF16-rounded values (many exact ties, so the tie
// rules at every threshold are exercised), given to the GPU as F32, as BF16 and as strided rows.
// Both backends run the same integer arithmetic (backend/sampling_math.h), so every token should
// agree: greedy rows must, sampled-row mismatches are counted and must stay below 0.1%; logprobs
// within 1e-4, top-N ids identical. Also: the same call twice gives the same tokens, the logits are
// left as they were, the op's time at batch 256 x 129280, and constrained rows (an allowed-token
// bitmask: a few tokens, most tokens, tokens whose logits are all -inf) against the oracle, every
// chosen token inside its mask, with the masked op's time at batch 64.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "backend/sampling_math.h"
#include "gpu/gpu_test_util.h"

namespace dsserve::test {
namespace {

// A row and the lists its spans point into.
struct RowStore {
  std::vector<std::pair<int32_t, float>> bias;
  std::vector<std::pair<int32_t, int32_t>> counts;
  std::vector<int32_t> seen, suppressed;
  SamplingRow row;
};

std::vector<int32_t> distinct_tokens(Rng& rng, int64_t V, int n) {
  std::set<int32_t> s;
  while (int(s.size()) < std::min<int64_t>(n, V)) s.insert(int32_t(rng() % uint64_t(V)));
  std::vector<int32_t> v(s.begin(), s.end());
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

bool token_allowed_in(std::span<const uint32_t> m, int64_t t) { return m.empty() || (m[size_t(t) >> 5] >> (t & 31) & 1); }

template <typename T>
T pick(Rng& rng, std::initializer_list<T> options) {
  return options.begin()[rng() % options.size()];
}

// A random mix of every setting; lists only now and then, as in serving.
void random_row(Rng& rng, int64_t V, RowStore& s) {
  SamplingRow& r = s.row;
  r = SamplingRow{};
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  r.temperature = pick(rng, {0.0f, 0.2f, 0.6f, 1.0f, 1.7f});
  r.top_k = pick(rng, {-1, -1, 1, 2, 20, 1000, int(V)});
  r.top_p = pick(rng, {1.0f, 1.0f, 0.95f, 0.8f, 0.3f});
  r.min_p = pick(rng, {0.0f, 0.0f, 0.02f, 0.2f});
  if (rng() % 3 == 0) {
    r.repetition_penalty = pick(rng, {0.8f, 1.2f, 2.0f});
    s.seen = distinct_tokens(rng, V, int(rng() % 300) + 1);
  }
  if (rng() % 3 == 0) {
    r.frequency_penalty = 4.0f * u(rng) - 2.0f;
    r.presence_penalty = 4.0f * u(rng) - 2.0f;
    for (int32_t t : distinct_tokens(rng, V, int(rng() % 100) + 1)) s.counts.push_back({t, int32_t(rng() % 5) + 1});
  }
  if (rng() % 4 == 0)
    for (int32_t t : distinct_tokens(rng, V, int(rng() % 20) + 1)) s.bias.push_back({t, 200.0f * u(rng) - 100.0f});
  if (rng() % 4 == 0)
    for (int i = 0, n = int(rng() % 3) + 1; i < n; ++i) s.suppressed.push_back(int32_t(rng() % uint64_t(V)));
  r.logit_bias = s.bias, r.output_counts = s.counts, r.seen = s.seen, r.suppressed = s.suppressed;
  r.seed = rng(), r.step = rng() % 100000;
  r.top_logprobs = pick(rng, {0, 0, 1, 5, 20});
  r.want_logprob = rng() % 2;
}

struct Agreement {
  int rows = 0, sampled = 0, sampled_mismatch = 0, greedy_mismatch = 0;
  double worst_logprob = 0;
};

void compare(const std::vector<SampledToken>& c, const std::vector<SampledToken>& g, const std::vector<SamplingRow>& rows,
             Agreement& a) {
  ASSERT_EQ(c.size(), g.size());
  for (size_t i = 0; i < c.size(); ++i) {
    const SamplingRow& r = rows[i];
    ++a.rows;
    if (r.temperature == 0) {
      a.greedy_mismatch += c[i].token != g[i].token;
    } else {
      ++a.sampled;
      a.sampled_mismatch += c[i].token != g[i].token;
    }
    if ((r.want_logprob || r.top_logprobs > 0) && c[i].token == g[i].token)
      a.worst_logprob = std::max(a.worst_logprob, double(std::fabs(c[i].logprob - g[i].logprob)));
    ASSERT_EQ(c[i].top_logprobs.size(), g[i].top_logprobs.size()) << "row " << i;
    for (size_t j = 0; j < c[i].top_logprobs.size(); ++j) {
      EXPECT_EQ(c[i].top_logprobs[j].second, g[i].top_logprobs[j].second) << "row " << i << " rank " << j;
      a.worst_logprob =
          std::max(a.worst_logprob, double(std::fabs(c[i].top_logprobs[j].first - g[i].top_logprobs[j].first)));
    }
  }
}

class GpuSampling : public ::testing::Test {
 protected:
  void SetUp() override { DS_REQUIRE_GPU(); }
  Rng rng{std::random_device{}()};
};

TEST_F(GpuSampling, TokensAndLogprobsMatchTheCpuOracle) {
  Agreement a;
  enum class Layout { F32, BF16, Strided };
  for (int64_t V : {int64_t(129280), int64_t(517)}) {
    for (int R : {1, 3, 64, 256}) {
      for (Layout layout : {Layout::F32, Layout::BF16, Layout::Strided}) {
        if (V == 129280 && R == 256 && layout != Layout::F32) continue;  // the CPU oracle's time
        gpu().begin_forward();
        const float scale = pick(rng, {1.0f, 3.0f, 8.0f});
        const int64_t pad = layout == Layout::Strided ? 40 : 0;
        Tensor host = randn({R, V + pad}, rng, scale);  // BF16-rounded: exact ties are common
        std::deque<RowStore> stores(static_cast<size_t>(R));
        std::vector<SamplingRow> rows;
        for (auto& s : stores) {
          random_row(rng, V, s);
          rows.push_back(s.row);
        }
        Tensor c_logits = cpu().to_device(host).slice(1, 0, V);
        Tensor g_logits = layout == Layout::BF16 ? to_backend(gpu(), host) : gpu().to_device(host);
        g_logits = g_logits.slice(1, 0, V);
        const auto c = cpu().sample(c_logits, rows);
        const auto g = gpu().sample(g_logits, rows);
        compare(c, g, rows, a);
        if (layout == Layout::F32) {  // the same call again: the same answer; the logits untouched
          const auto again = gpu().sample(g_logits, rows);
          for (int i = 0; i < R; ++i) {
            EXPECT_EQ(again[size_t(i)].token, g[size_t(i)].token);
            EXPECT_EQ(again[size_t(i)].logprob, g[size_t(i)].logprob);
          }
          EXPECT_EQ(rel_err(gpu(), g_logits, cpu(), c_logits), 0.0);
        }
      }
    }
  }
  std::printf("[ sample   ] %d rows (%d sampled): %d sampled tokens differ, %d greedy; worst |dlogprob| %.2e\n",
              a.rows, a.sampled, a.sampled_mismatch, a.greedy_mismatch, a.worst_logprob);
  RecordProperty("sampled_mismatch", a.sampled_mismatch);
  RecordProperty("worst_logprob", std::to_string(a.worst_logprob));
  EXPECT_EQ(a.greedy_mismatch, 0);
  EXPECT_LE(a.sampled_mismatch, a.sampled / 1000) << "of " << a.sampled << " sampled rows";
  EXPECT_LE(a.worst_logprob, 1e-4);
}

// Decode at small batch with the fused decode path: few greedy rows without lists go through the
// multi-block greedy kernel (each row over many blocks). The oracle's tokens (ties included: the
// logits are BF16-rounded, and a row is built with its best value repeated), logprobs within 1e-4;
// the same tokens as the one-block kernel, for F32, BF16 and strided logits.
TEST_F(GpuSampling, GreedyRowsOverManyBlocks) {
  auto& cb = static_cast<cuda::CudaBackend&>(gpu());
  double worst = 0;
  for (int64_t V : {int64_t(129280), int64_t(8192), int64_t(50001)}) {
    for (int R : {1, 4, 32}) {
      for (int layout = 0; layout < 3; ++layout) {  // F32, BF16, strided F32
        gpu().begin_forward();
        const int64_t pad = layout == 2 ? 24 : 0;
        Tensor host = randn({R, V + pad}, rng, 4.0f);
        for (int r = 0; r < R; r += 2) {  // ties for the best value: the lowest id wins
          float* row = host.ptr<float>() + int64_t(r) * (V + pad);
          const float best = bf16_to_f32(f32_to_bf16(*std::max_element(row, row + V) + 1.0f));  // exact in BF16
          row[rng() % uint64_t(V)] = best, row[rng() % uint64_t(V)] = best;
        }
        std::vector<SamplingRow> rows(static_cast<size_t>(R));
        for (auto& row : rows) row.temperature = 0, row.want_logprob = rng() % 2 == 0;
        Tensor c_logits = cpu().to_device(host).slice(1, 0, V);
        Tensor g_logits = (layout == 1 ? to_backend(gpu(), host) : gpu().to_device(host)).slice(1, 0, V);
        const auto c = cpu().sample(c_logits, rows);
        cb.set_fused_decode(false);  // the one-block sampler
        const auto one_block = gpu().sample(g_logits, rows);
        if (!sm80_forced()) cb.set_fused_decode(true);  // the default: split over many blocks (none on sm80)
        const auto split = gpu().sample(g_logits, rows);
        for (int i = 0; i < R; ++i) {
          const std::string at = "V=" + std::to_string(V) + " R=" + std::to_string(R) + " layout " +
                                 std::to_string(layout) + " row " + std::to_string(i);
          EXPECT_EQ(split[size_t(i)].token, c[size_t(i)].token) << at;
          EXPECT_EQ(split[size_t(i)].token, one_block[size_t(i)].token) << at;
          if (rows[size_t(i)].want_logprob)
            worst = std::max(worst, double(std::fabs(split[size_t(i)].logprob - c[size_t(i)].logprob)));
        }
      }
    }
  }
  RecordProperty("worst_logprob", std::to_string(worst));
  EXPECT_LE(worst, 1e-4);
}

TEST_F(GpuSampling, EveryThresholdAtItsEdges) {
  // Rows built to sit on the thresholds: a flat vocabulary (every token tied), a few tied best
  // tokens, top_k at the size of a tie group, top_p and min_p on the odds of two-level logits,
  // all -inf, everything suppressed but one token.
  const int64_t V = 1000;
  std::vector<std::vector<float>> rows_logits;
  std::vector<SamplingRow> rows;
  auto add = [&](std::vector<float> l, SamplingRow r) {
    rows_logits.push_back(std::move(l));
    rows.push_back(r);
  };
  std::vector<float> flat(size_t(V), 0.5f), two_level(size_t(V), 0.0f), three_best(size_t(V), -1.0f);
  std::vector<float> nothing(size_t(V), -INFINITY);
  for (int i = 0; i < 10; ++i) two_level[size_t(i * 37)] = std::log(9.0f);  // 10 tokens with 9x the odds
  three_best[5] = three_best[500] = three_best[999] = 2.0f;
  std::vector<int32_t> all_but_one;
  for (int32_t t = 0; t < V; ++t)
    if (t != 321) all_but_one.push_back(t);
  for (uint64_t step = 0; step < 40; ++step) {
    SamplingRow r;
    r.seed = 11, r.step = step;
    add(flat, r);
    r.top_k = 3;
    add(flat, r);
    add(three_best, r);
    r.top_k = 10;
    add(two_level, r);
    r.top_k = -1, r.top_p = 1.0f / 12.0f;  // the mass of the 10 best: 90 / (90 + 990)
    add(two_level, r);
    r.top_p = 1.0f, r.min_p = 1.0f / 9.0f;  // the odds of the others
    add(two_level, r);
    r.min_p = 0;
    add(nothing, r);
    r.suppressed = all_but_one;
    add(flat, r);
    r.suppressed = {}, r.temperature = 0;
    add(three_best, r);
  }
  Tensor host = Tensor::zeros_host(DType::F32, {int64_t(rows_logits.size()), V});
  for (size_t i = 0; i < rows_logits.size(); ++i)
    std::copy(rows_logits[i].begin(), rows_logits[i].end(), host.ptr<float>() + int64_t(i) * V);
  gpu().begin_forward();
  const auto c = cpu().sample(cpu().to_device(host), rows);
  const auto g = gpu().sample(gpu().to_device(host), rows);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(c[i].token, g[i].token) << "row " << i;
  EXPECT_EQ(c[7].token, 321) << "everything else suppressed";
}

// A random allowed-token mask: a handful of tokens, about half, or all but a few.
std::vector<uint32_t> random_mask(Rng& rng, int64_t V) {
  std::vector<uint32_t> m(size_t((V + 31) / 32), 0);
  const int kind = int(rng() % 3);
  for (int64_t t = 0; t < V; ++t) {
    const bool on = kind == 0 ? rng() % 5000 == 0 : kind == 1 ? rng() % 2 == 0 : rng() % 1000 != 0;
    if (on) m[size_t(t) >> 5] |= 1u << (t & 31);
  }
  const int64_t forced = int64_t(rng() % uint64_t(V));
  m[size_t(forced) >> 5] |= 1u << (forced & 31);
  return m;
}

TEST_F(GpuSampling, AllowedMasksMatchTheCpuOracle) {
  Agreement a;
  int outside = 0;
  for (int64_t V : {int64_t(129280), int64_t(517)}) {
    for (int R : {1, 7, 64}) {
      gpu().begin_forward();
      Tensor host = randn({R, V}, rng, pick(rng, {1.0f, 8.0f}));
      std::deque<RowStore> stores(static_cast<size_t>(R));
      std::deque<std::vector<uint32_t>> masks;
      std::vector<SamplingRow> rows;
      for (int i = 0; i < R; ++i) {
        random_row(rng, V, stores[size_t(i)]);
        SamplingRow r = stores[size_t(i)].row;
        if (i % 4 != 3) r.allowed = masks.emplace_back(random_mask(rng, V));  // every fourth row free
        if (i % 8 == 5) {  // the allowed tokens' logits all -inf: the lowest allowed id
          for (int64_t t = 0; t < V; ++t)
            if (token_allowed_in(r.allowed, t)) host.ptr<float>()[int64_t(i) * V + t] = -INFINITY;
          r.suppressed = {};
        }
        rows.push_back(r);
      }
      const auto c = cpu().sample(cpu().to_device(host), rows);
      const auto g = gpu().sample(gpu().to_device(host), rows);
      compare(c, g, rows, a);
      for (size_t i = 0; i < rows.size(); ++i)
        if (!rows[i].allowed.empty()) outside += !token_allowed_in(rows[i].allowed, g[i].token) + !token_allowed_in(rows[i].allowed, c[i].token);
    }
  }
  std::printf("[ sample   ] masked: %d rows (%d sampled): %d sampled tokens differ, %d greedy; %d outside their mask\n",
              a.rows, a.sampled, a.sampled_mismatch, a.greedy_mismatch, outside);
  EXPECT_EQ(outside, 0);
  EXPECT_EQ(a.greedy_mismatch, 0);
  EXPECT_LE(a.sampled_mismatch, a.sampled / 1000 + 1) << "of " << a.sampled << " sampled rows";
}

TEST_F(GpuSampling, MaskedTimeAtBatch64) {
  const int64_t V = 129280, R = 64;
  gpu().begin_forward();
  Tensor logits = gpu().to_device(randn({R, V}, rng, 3.0f));
  std::deque<std::vector<uint32_t>> masks;
  for (int i = 0; i < R; ++i) masks.push_back(random_mask(rng, V));
  for (const bool masked : {false, true})
    for (const float temperature : {0.0f, 1.0f}) {
      std::vector<SamplingRow> rows(static_cast<size_t>(R));
      for (int i = 0; i < R; ++i) {
        rows[size_t(i)].temperature = temperature;
        if (masked) rows[size_t(i)].allowed = masks[size_t(i)];
      }
      gpu().sample(logits, rows);  // warm-up
      std::vector<double> ms;
      for (int k = 0; k < 20; ++k) {
        gpu().begin_forward();
        const auto t0 = std::chrono::steady_clock::now();
        gpu().sample(logits, rows);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      std::printf("[ bench    ] sample [64, 129280] temperature %.0f %-9s %8.3f ms (host to host, median of 20)\n",
                  temperature, masked ? "masked" : "free", ms[ms.size() / 2]);
    }
}

TEST_F(GpuSampling, TimeAtBatch256) {
  const int64_t V = 129280, R = 256;
  gpu().begin_forward();
  Tensor logits = gpu().to_device(randn({R, V}, rng, 3.0f));
  struct Setting {
    const char* name;
    SamplingRow row;
  };
  std::deque<RowStore> stores(1);
  random_row(rng, V, stores[0]);
  SamplingRow greedy, plain, cut, full;
  greedy.temperature = 0;
  cut.top_k = 50, cut.top_p = 0.95f;
  full = stores[0].row;
  full.temperature = 0.7f, full.top_k = -1, full.top_p = 0.9f, full.min_p = 0.02f, full.top_logprobs = 20;
  for (const Setting& s : {Setting{"greedy", greedy}, Setting{"temperature 1", plain}, Setting{"top_k 50 top_p 0.95", cut},
                           Setting{"top_p 0.9 min_p lists top-20", full}}) {
    const std::vector<SamplingRow> rows(static_cast<size_t>(R), s.row);
    gpu().sample(logits, rows);  // warm-up
    std::vector<double> ms;
    for (int i = 0; i < 10; ++i) {
      gpu().begin_forward();  // recycles the scratch of the last call (the logits are not scratch)
      const auto t0 = std::chrono::steady_clock::now();
      gpu().sample(logits, rows);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf("[ bench    ] sample %-30s [%lld, %lld] F32  %8.3f ms (host to host)  %7.0f GB/s of logits read once\n",
                s.name, (long long)R, (long long)V, median, double(R * V * 4) / median / 1e6);
    RecordProperty(std::string("sample ") + s.name, std::to_string(median) + " ms");
  }
}

}  // namespace
}  // namespace dsserve::test
