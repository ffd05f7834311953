// Tensor parallelism on two GPUs (skipped with fewer): the fixture checkpoints split over 2 ranks
// (NCCL all-reduce) against the same checkpoints on one GPU: greedy 24-token continuations step
// by step (reported: where TP2 leaves TP1's path and TP1's margin there; held: TP2 leaves the
// reference's greedy path only at a low reference margin, as the golden tests hold one GPU) and
// the robust logit statistics of the golden tests, TP2 vs TP1 (held to the golden bounds) and each
// against the float32 reference. With
// DSSERVE_TP_BENCH=<config dir> also times decode steps of a 4-layer dummy model at batch 1 and 64.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "common/test_paths.h"
#include "core/error.h"
#include "gpu/gpu_test_util.h"
#include "io/safetensors.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/batch_builder.h"

namespace dsserve::test {
namespace {

constexpr int kPrompts = 5, kSteps = 24;

bool two_gpus() { return cuda_device_count() >= 2; }

std::vector<int32_t> ids_of(const Checkpoint& ref, int k, const std::string& what) {
  Tensor t = ref.view("prompt." + std::to_string(k) + "." + what);
  return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()};
}

class GpuTensorParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuTensorParallel, Tp2MatchesTp1) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  if (!two_gpus()) GTEST_SKIP() << "fewer than 2 CUDA devices";
  const bool fp8 = GetParam() == "tiny-v3-fp8";
  const std::string dir = fixtures_dir() + "/" + GetParam();
  const int page_size = 16;
  const int64_t pages = 128;
  TestModel one = load_model_on(DeviceKind::Cuda, dir, page_size, pages * page_size);
  ModelConfig cfg = ModelConfig::load(dir);
  CheckpointWeights src(dir, cfg);
  LoadOptions lo;
  lo.load_mtp = false;
  ReplicaRunner tp(cfg, configure_gpu_backends(create_backends(DeviceKind::Cuda, {2})), src, 4096, lo);
  tp.make_cache(pages, page_size, false, std::nullopt);
  PagePool pool(pages, page_size);
  ForwardFn f1 = [&](const ForwardBatch& b) { return one.model->forward(b, one.cache); };
  ForwardFn f2 = [&](const ForwardBatch& b) { return tp.forward(b); };
  Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");

  LogprobStats tp2_vs_tp1, tp1_vs_ref, tp2_vs_ref;
  int same = 0, total = 0, tp1_ref = 0, tp2_ref = 0, tp1_margin_misses = 0;
  const float margin_bound = fp8 ? 1.5f : 0.5f;
  for (int k = 0; k < kPrompts; ++k) {
    std::vector<int32_t> ids = ids_of(ref, k, "ids"), ref_greedy = ids_of(ref, k, "greedy");
    auto reference = rows_of(ref.view("prompt." + std::to_string(k) + ".logits"));
    for (int decode_from : {-1, int(ids.size()) / 2}) {
      auto a = logits_with(f1, one.model->backend(), *one.pool, ids, decode_from);
      auto b = logits_with(f2, tp.backend(), pool, ids, decode_from);
      tp2_vs_tp1.add(b, a);
      tp1_vs_ref.add(a, reference);
      tp2_vs_ref.add(b, reference);
    }
    std::vector<float> margins;
    auto g1 = greedy_with(f1, one.model->backend(), *one.pool, ids, kSteps, &margins);
    auto g2 = greedy_with(f2, tp.backend(), pool, ids, kSteps);
    size_t i = 0;
    while (i < g1.size() && g1[i] == g2[i]) ++i;
    same += int(i);
    total += kSteps;
    auto prefix = [](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
      size_t j = 0;
      while (j < a.size() && j < b.size() && a[j] == b[j]) ++j;
      return int(j);
    };
    tp1_ref += prefix(g1, ref_greedy);
    tp2_ref += prefix(g2, ref_greedy);
    std::printf("[ stats    ] %s prompt %d: TP2 = TP1 for %zu/%d steps%s\n", GetParam().c_str(), k, i, kSteps,
                i < g1.size() ? (", TP1 margin at the divergence " + std::to_string(margins[i])).c_str() : "");
    if (i < g1.size() && margins[i] >= margin_bound) ++tp1_margin_misses;
    // TP2 is held to what the golden tests hold one GPU to: it follows the float32 reference's
    // greedy path until a step where the reference's own margin is small.
    const auto ref_margin = ref.view("prompt." + std::to_string(k) + ".greedy_margin");
    const int d2 = prefix(g2, ref_greedy), d1 = prefix(g1, ref_greedy);
    if (d2 < int(ref_greedy.size()) && d2 < kSteps) {
      EXPECT_LT(ref_margin.ptr<float>()[d2], margin_bound)
          << "prompt " << k << ": TP2 leaves the reference's greedy path at step " << d2
          << " where the reference margin is " << ref_margin.ptr<float>()[d2];
    }
    std::printf("[ stats    ] %s prompt %d: reference greedy path kept by TP1 for %d, TP2 for %d steps (reference "
                "margin where TP2 leaves it: %s)\n", GetParam().c_str(), k, d1, d2,
                d2 < int(ref_greedy.size()) && d2 < kSteps ? std::to_string(ref_margin.ptr<float>()[d2]).c_str() : "-");
  }
  std::printf("[ stats    ] %s greedy: TP2 = TP1 %d/%d steps; prefix matching the reference: TP1 %d, TP2 %d\n",
              GetParam().c_str(), same, total, tp1_ref, tp2_ref);
  std::printf("[ stats    ] %s TP2 vs TP1: %s\n", GetParam().c_str(), tp2_vs_tp1.str().c_str());
  std::printf("[ stats    ] %s TP1 vs reference: %s\n", GetParam().c_str(), tp1_vs_ref.str().c_str());
  std::printf("[ stats    ] %s TP2 vs reference: %s\n", GetParam().c_str(), tp2_vs_ref.str().c_str());
  std::printf("[ stats    ] %s TP2-vs-TP1 divergences where TP1's margin >= %.1f: %d\n", GetParam().c_str(),
              margin_bound, tp1_margin_misses);
  RecordProperty("greedy_tp2_eq_tp1", std::to_string(same) + "/" + std::to_string(total));
  RecordProperty("tp2_vs_tp1_divergences_above_margin_bound", std::to_string(tp1_margin_misses));
  RecordProperty("tp2_vs_tp1_median", std::to_string(tp2_vs_tp1.quantile(0.5)));
  RecordProperty("tp2_vs_tp1_p90", std::to_string(tp2_vs_tp1.quantile(0.9)));
  RecordProperty("tp2_vs_tp1_top1", std::to_string(tp2_vs_tp1.agree) + "/" + std::to_string(tp2_vs_tp1.confident));
  // FP8 shards starting inside a 128-block run as BF16 (see ShardSpec), so TP2 differs from TP1 by
  // about W8A8's own error there; BF16 differs only by rounding order.
  EXPECT_LE(tp2_vs_tp1.quantile(0.5), fp8 ? 0.25 : 0.04) << tp2_vs_tp1.str();
  EXPECT_LE(tp2_vs_tp1.quantile(0.9), fp8 ? 1.0 : 0.25) << tp2_vs_tp1.str();
  EXPECT_GE(tp2_vs_tp1.agreement(), fp8 ? 0.88 : 0.92) << tp2_vs_tp1.str();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuTensorParallel, ::testing::Values("tiny-v3-bf16", "tiny-v3-fp8"),
                         [](const auto& info) { return info.param == "tiny-v3-bf16" ? "bf16" : "fp8"; });

// Mean decode-step time (forward + reading the logits) of `batch` sequences with `prefix` cached tokens.
double decode_step_ms(const ForwardFn& f, Backend& be, PagePool& pool, int batch, int prefix, int steps) {
  std::vector<SequencePages> seqs(static_cast<size_t>(batch));
  for (auto& s : seqs)
    if (!s.reserve(pool, prefix + steps + 4)) throw Error("bench pool too small");
  auto step = [&](int i) {
    std::vector<SequenceChunk> cs;
    for (auto& s : seqs) {
      SequenceChunk c;
      c.pages = &s;
      c.prefix_len = prefix + i;
      c.tokens = {int32_t(100 + i)};
      c.logit_offsets = {0};
      cs.push_back(std::move(c));
    }
    be.to_host_f32(f(build_forward_batch(cs, pool.page_size(), AttentionMode::Absorbed)).logits);
  };
  for (int i = 0; i < 3; ++i) step(i);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 3; i < 3 + steps; ++i) step(i);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
  for (auto& s : seqs) s.release_all(pool);
  return ms;
}

TEST(GpuTensorParallelBench, DecodeStep4LayerDummy) {
  DS_REQUIRE_GPU();
  const char* config_dir = std::getenv("DSSERVE_TP_BENCH");
  if (!config_dir || !two_gpus()) GTEST_SKIP() << "set DSSERVE_TP_BENCH=<config dir> on a machine with 2 GPUs";
  ModelConfig cfg = ModelConfig::load(config_dir, R"({"num_hidden_layers": 4})");
  DummyWeights src(cfg, 1);
  LoadOptions lo;
  lo.load_mtp = false;
  const int page_size = 64, prefix = 512, steps = 20;
  const int64_t pages = 64 * (prefix + 64) / page_size + 64;
  for (int world : {1, 2}) {
    ReplicaRunner m(cfg, configure_gpu_backends(create_backends(DeviceKind::Cuda, {world})), src, 4096, lo);
    m.make_cache(pages, page_size, false, std::nullopt);
    PagePool pool(pages, page_size);
    ForwardFn f = [&](const ForwardBatch& b) { return m.forward(b); };
    for (int batch : {1, 64}) {
      double ms = decode_step_ms(f, m.backend(), pool, batch, prefix, steps);
      std::printf("[ bench    ] TP%d decode step, 4-layer %s dummy, batch %d, %d cached tokens: %.3f ms\n", world,
                  cfg.architecture.c_str(), batch, prefix, ms);
      RecordProperty("tp" + std::to_string(world) + "_b" + std::to_string(batch) + "_ms", std::to_string(ms));
    }
  }
}

}  // namespace
}  // namespace dsserve::test
