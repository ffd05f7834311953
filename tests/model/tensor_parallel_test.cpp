// Tensor parallelism on the CPU: the fixture checkpoints (quantized ones included) split over 2 and 4 ranks (threads of CPU
// backends summing in host memory), with the routed experts split by columns or placed whole on
// the ranks (expert parallelism), give the logits of the unsplit model, up to float32 summation
// order, for prefill and absorbed decode, and the same greedy continuations; the loader's shards
// have the shapes ShardSpec promises.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "io/safetensors.h"
#include "model/model_test_util.h"
#include "parallel/replica_runner.h"

namespace dsserve::test {
namespace {

std::vector<int32_t> prompt_ids(const Checkpoint& ref, int k) {
  Tensor ids = ref.view("prompt." + std::to_string(k) + ".ids");
  return {ids.ptr<int32_t>(), ids.ptr<int32_t>() + ids.numel()};
}

class CpuTensorParallel : public ::testing::TestWithParam<std::tuple<std::string, int, bool>> {};

TEST_P(CpuTensorParallel, MatchesUnsplitModel) {
  DS_REQUIRE_FIXTURES();
  const auto [name, world, expert_parallel] = GetParam();
  const std::string dir = fixtures_dir() + "/" + name;
  const int page_size = 16;
  const int64_t pages = 64;
  TestModel one = load_checkpoint_model(dir, page_size, pages * page_size);
  ModelConfig cfg = ModelConfig::load(dir, "", fixture_quantization(dir));
  CheckpointWeights src(dir, cfg);
  LoadOptions lo;
  lo.load_mtp = false;
  lo.shard.expert_parallel = expert_parallel;
  ReplicaRunner tp(cfg, create_backends(DeviceKind::Cpu, {world}), src, 4096, lo);
  tp.make_cache(pages, page_size, false, std::nullopt);
  PagePool pool(pages, page_size);
  ForwardFn f_one = [&](const ForwardBatch& b) { return one.model->forward(b, one.cache); };
  ForwardFn f_tp = [&](const ForwardBatch& b) { return tp.forward(b); };

  Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
  double worst = 0;
  int greedy_same = 0;
  for (int k = 0; k < 5; ++k) {
    std::vector<int32_t> ids = prompt_ids(ref, k);
    for (int decode_from : {-1, int(ids.size()) / 2}) {
      auto a = logits_with(f_one, *one.backend, *one.pool, ids, decode_from);
      auto b = logits_with(f_tp, tp.backend(), pool, ids, decode_from);
      ASSERT_EQ(a.size(), b.size());
      for (size_t r = 0; r < a.size(); ++r) worst = std::max(worst, max_topk_logprob_diff(b[r], a[r]));
    }
    auto ga = greedy_with(f_one, *one.backend, *one.pool, ids, 12);
    auto gb = greedy_with(f_tp, tp.backend(), pool, ids, 12);
    greedy_same += ga == gb;
  }
  RecordProperty("max_top5_dlogprob", std::to_string(worst));
  EXPECT_LT(worst, 2e-3) << name << " TP" << world << (expert_parallel ? " EP" : "");
  EXPECT_EQ(greedy_same, 5) << name << " TP" << world << (expert_parallel ? " EP" : "");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CpuTensorParallel,
                         ::testing::Combine(::testing::Values("tiny-v3-bf16", "tiny-v3-fp8"), ::testing::Values(2, 4),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == "tiny-v3-bf16" ? "bf16" : "fp8") + "_tp" +
                                  std::to_string(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_ep" : "");
                         });

// The quantized checkpoints' shards keep their format where the slice allows (AWQ: whole packed
// columns of 8 and whole groups of 64 input channels; INT8 block: 128-aligned) and are dequantized
// otherwise (AWQ TP4: the experts' down_proj has 32 input channels per rank).
INSTANTIATE_TEST_SUITE_P(QuantizedFixtures, CpuTensorParallel,
                         ::testing::Values(std::tuple{"tiny-v3-awq", 2, false}, std::tuple{"tiny-v3-awq", 4, false},
                                           std::tuple{"tiny-v3-awq", 2, true}, std::tuple{"tiny-v3-int8-channel", 2, false},
                                           std::tuple{"tiny-v3-int8-block", 4, false}),
                         [](const auto& info) {
                           std::string name = std::string(std::get<0>(info.param)).substr(std::string("tiny-v3-").size());
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + "_tp" + std::to_string(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_ep" : "");
                         });

TEST(CpuTensorParallel, DummyWeightsRunSplit) {
  // Dummy weights are drawn in each shard's own shape (other values than the unsplit model's), so
  // only that a split forward runs and gives finite logits of the full vocabulary is checked.
  ModelConfig cfg = ModelConfig::parse(tiny_model_config().dump(), "tiny");
  DummyWeights src(cfg, 7);
  LoadOptions lo;
  lo.load_mtp = false;
  ReplicaRunner tp(cfg, create_backends(DeviceKind::Cpu, {2}), src, 256, lo);
  tp.make_cache(8, 16, false, std::nullopt);
  PagePool pool(8, 16);
  ForwardFn f = [&](const ForwardBatch& b) { return tp.forward(b); };
  auto rows = logits_with(f, tp.backend(), pool, {3, 5, 7, 11, 13}, 3);
  ASSERT_EQ(rows.size(), 5u);
  for (const auto& r : rows) {
    ASSERT_EQ(int64_t(r.size()), cfg.vocab_size);
    for (float v : r) ASSERT_TRUE(std::isfinite(v));
  }
}

}  // namespace
}  // namespace dsserve::test
