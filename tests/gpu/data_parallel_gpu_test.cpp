// Data-parallel attention on 2 or 4 GPUs (skipped with fewer than --tp-size devices): the fixture
// checkpoints in D attention groups (NCCL: split communicators, the padded row all-gather before
// each MLP, the world all-reduce after it) against the CPU oracle on one device. Every group runs
// its own prompt on its own thread (lengths differ, so groups go idle at different times); logits
// of a prefill followed by single-token decode steps and greedy continuations are held to the
// golden tests' bounds. Decode runs once eagerly and once through CUDA graphs (every group padded
// to one recorded size; the test checks that graph rounds happened).
#include <gtest/gtest.h>

#include <thread>

#include "common/test_paths.h"
#include "core/error.h"
#include "gpu/gpu_test_util.h"
#include "model/weight_source.h"
#include "parallel/data_parallel_model.h"

namespace dsserve::test {
namespace {

struct Case {
  std::string model;
  int dp, tp;
  bool ep, graphs;
};

std::string case_name(const Case& c) {
  return std::string(c.model == "tiny-v3-bf16" ? "bf16" : "fp8") + "_dp" + std::to_string(c.dp) + "_tp" +
         std::to_string(c.tp) + (c.ep ? "_ep" : "") + (c.graphs ? "_graphs" : "_eager");
}

void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c); }

class GpuDataParallel : public ::testing::TestWithParam<Case> {};

TEST_P(GpuDataParallel, GroupsMatchTheCpuOracle) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  const Case c = GetParam();
  if (cuda_device_count() < c.tp) GTEST_SKIP() << "fewer than " << c.tp << " CUDA devices";
  const bool fp8 = c.model == "tiny-v3-fp8";
  const std::string dir = fixtures_dir() + "/" + c.model;
  const int page_size = 16;
  const int64_t pages = 64;
  TestModel oracle = load_model_on(DeviceKind::Cpu, dir, page_size, pages * page_size);
  ModelConfig cfg = ModelConfig::load(dir);
  CheckpointWeights src(dir, cfg);
  LoadOptions lo;
  lo.load_mtp = false;
  lo.shard.expert_parallel = c.ep;
  DataParallelModel dp(cfg, configure_gpu_backends(create_backends(DeviceKind::Cuda, {c.tp, c.dp})), c.dp, src, 4096, lo);
  dp.allocate_caches(pages + 1, page_size);  // the pool's pages and the trash page
  if (c.graphs) {
    ASSERT_TRUE(dp.capture_decode_graphs(int32_t(pages * page_size), {1, 2, 4}));
  }
  std::vector<std::unique_ptr<PagePool>> pools;
  for (int g = 0; g < c.dp; ++g) pools.push_back(std::make_unique<PagePool>(pages, page_size));

  std::mt19937 rng(17);
  std::vector<std::vector<int32_t>> prompts;
  for (int g = 0; g < c.dp; ++g) {
    std::vector<int32_t> ids(size_t(6 + 9 * g));
    for (auto& x : ids) x = int32_t(2 + rng() % uint32_t(cfg.vocab_size - 2));
    prompts.push_back(ids);
  }
  const int steps = 12;
  ForwardFn f_oracle = [&](const ForwardBatch& b) { return oracle.model->forward(b, oracle.cache); };
  std::vector<std::vector<std::vector<float>>> want(size_t(c.dp)), got(size_t(c.dp));
  std::vector<std::vector<int32_t>> want_greedy(size_t(c.dp)), got_greedy(size_t(c.dp));
  std::vector<std::vector<float>> margins(size_t(c.dp));
  for (int g = 0; g < c.dp; ++g) {
    const auto& ids = prompts[size_t(g)];
    want[size_t(g)] = logits_with(f_oracle, oracle.model->backend(), *oracle.pool, ids, int(ids.size()) / 2);
    want_greedy[size_t(g)] = greedy_with(f_oracle, oracle.model->backend(), *oracle.pool, ids, steps, &margins[size_t(g)]);
  }
  std::vector<std::string> errors(size_t(c.dp));
  for (int g = 0; g < c.dp; ++g) dp.group(g).set_has_work(true);
  std::vector<std::thread> threads;
  for (int g = 0; g < c.dp; ++g)
    threads.emplace_back([&, g] {
      ModelRunner& runner = dp.group(g);
      ForwardFn f = [&](const ForwardBatch& b) { return runner.forward(b, dp.cache(g)); };
      const auto& ids = prompts[size_t(g)];
      try {
        got[size_t(g)] = logits_with(f, runner.backend(), *pools[size_t(g)], ids, int(ids.size()) / 2);
        got_greedy[size_t(g)] = greedy_with(f, runner.backend(), *pools[size_t(g)], ids, steps);
      } catch (const std::exception& e) {
        errors[size_t(g)] = e.what();
      }
      runner.set_has_work(false);
    });
  for (auto& t : threads) t.join();

  const double median = fp8 ? 0.25 : 0.04, p90 = fp8 ? 1.0 : 0.25, agreement = fp8 ? 0.88 : 0.92;
  const float margin_bound = fp8 ? 1.5f : 0.5f;
  LogprobStats stats;
  for (int g = 0; g < c.dp; ++g) {
    ASSERT_EQ(errors[size_t(g)], "") << "group " << g;
    stats.add(got[size_t(g)], want[size_t(g)]);
    const auto& a = got_greedy[size_t(g)];
    const auto& b = want_greedy[size_t(g)];
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    if (i < b.size()) {
      EXPECT_LT(margins[size_t(g)][i], margin_bound)
          << case_name(c) << " group " << g << " leaves the oracle's greedy path at step " << i << " where its margin is "
          << margins[size_t(g)][i];
    }
  }
  std::printf("[ stats    ] %s vs CPU oracle: %s; rounds %lld, of which CUDA graphs %lld\n", case_name(c).c_str(),
              stats.str().c_str(), (long long)dp.rounds(), (long long)dp.graph_rounds());
  EXPECT_LE(stats.quantile(0.5), median) << stats.str();
  EXPECT_LE(stats.quantile(0.9), p90) << stats.str();
  EXPECT_GE(stats.agreement(), agreement) << stats.str();
  if (c.graphs) {
    EXPECT_GT(dp.graph_rounds(), 0) << "decode steps of every group together replay a recorded size";
  } else {
    EXPECT_EQ(dp.graph_rounds(), 0);
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const char* m : {"tiny-v3-bf16", "tiny-v3-fp8"})
    for (auto [dp, tp] : {std::pair{2, 2}, {2, 4}, {4, 4}})
      for (bool ep : {false, true})
        for (bool graphs : {false, true}) out.push_back({m, dp, tp, ep, graphs});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuDataParallel, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return case_name(info.param); });

}  // namespace
}  // namespace dsserve::test
