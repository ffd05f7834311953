// Speculative decoding (EAGLE with the MTP layer) over two GPUs (skipped with fewer): a
// tensor-parallel runner records its decode, verify and MTP draft graphs on every rank, and greedy
// output, chains and trees, equals plain eager decoding with the same split on a fixture; the
// verify forwards (and, for chains, the MTP draft steps) were replayed from the graphs.
#include <gtest/gtest.h>

#include "common/engine_runs.h"
#include "common/test_paths.h"
#include "gpu/gpu_test_util.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/scheduler.h"

namespace dsserve::test {
namespace {

struct Setting {
  int steps = 0, topk = 0, draft = 0;  // steps 0: plain decoding
};

struct SpecRun {
  std::vector<std::vector<int32_t>> tokens;
  RecordedGraphs graphs;
  int64_t verify_total = 0;
};

// One TP2 model on GPUs 0 and 1, its caches, graphs of every kind the setting uses (none for plain
// decoding) and an engine over them, run to completion on greedy requests.
SpecRun run_tp2(const std::string& dir, Setting st, const std::vector<std::vector<int32_t>>& prompts) {
  const ModelConfig cfg = ModelConfig::load(dir);
  CheckpointWeights src(dir, cfg);
  LoadOptions lo;
  lo.load_mtp = st.steps > 0;
  ReplicaRunner tp(cfg, configure_gpu_backends(create_backends(DeviceKind::Cuda, {2})), src, 4096, lo);
  const int page_size = 16;
  PagePool pool(256, page_size);
  LatentCache cache = tp.make_cache(cache_pages_for(pool), page_size, false, std::nullopt);
  LatentCache mtp_cache;
  SchedulerOptions so;
  if (st.steps > 0) {
    mtp_cache = tp.make_cache(cache_pages_for(pool), page_size, true, std::nullopt);
    so.speculative.algorithm = "EAGLE";
    so.speculative.num_steps = st.steps;
    so.speculative.eagle_topk = st.topk;
    so.speculative.num_draft_tokens = st.draft;
    so.speculative.validate_and_default();
    so.mtp_cache = &mtp_cache;
    GraphPlan plan;
    plan.trash_slot = int32_t(pool.num_pages() * page_size);
    plan.decode_sizes = plan.verify_sizes = plan.mtp_sizes = {1, 2, 4};
    plan.verify_tokens = so.speculative.num_draft_tokens;
    EXPECT_TRUE(tp.capture_graphs(plan, cache, mtp_cache));
  }
  std::unique_ptr<Engine> engine = create_engine(tp, cache, pool, so);
  SpecRun out;
  out.tokens = test::tokens_to_completion(*engine, test::greedy_requests(prompts, 20));
  out.verify_total = engine->stats().spec_verify_total;
  engine->shutdown();
  out.graphs = tp.recorded_graphs();
  return out;
}

TEST(GpuSpeculativeTensorParallel, GraphsOfEveryKindMatchPlainDecodingWithTheSameSplit) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  if (cuda_device_count() < 2) GTEST_SKIP() << "fewer than 2 CUDA devices";
  const std::string dir = fixtures_dir() + "/tiny-v3-bf16";
  const std::vector<std::vector<int32_t>> prompts = {{0, 100, 200, 300}, {0, 5, 6, 7, 8, 9, 10, 11}, {0, 1242, 17}};
  const SpecRun plain = run_tp2(dir, {}, prompts);
  for (Setting st : {Setting{3, 1, 4}, Setting{2, 2, 4}}) {
    const SpecRun got = run_tp2(dir, st, prompts);
    const std::string where = "steps " + std::to_string(st.steps) + " topk " + std::to_string(st.topk);
    EXPECT_EQ(got.tokens, plain.tokens) << where;
    EXPECT_EQ(got.graphs.verify, (std::vector<int>{1, 2, 4})) << where << ": verify graphs recorded";
    EXPECT_EQ(got.graphs.mtp, (std::vector<int>{1, 2, 4})) << where << ": MTP draft graphs recorded";
    EXPECT_GT(got.verify_total, 0) << where;
    EXPECT_GT(got.graphs.verify_replays, 0) << where << ": no verify forward was replayed";
    if (st.topk == 1) {  // chain steps after the first are one token per sequence: the recorded draft step
      EXPECT_GT(got.graphs.mtp_replays, 0) << where << ": no MTP draft step was replayed";
    }
    std::printf("[ stats    ] TP2 %s: %lld verify forwards and %lld MTP draft steps replayed from graphs\n",
                where.c_str(), static_cast<long long>(got.graphs.verify_replays),
                static_cast<long long>(got.graphs.mtp_replays));
  }
}

}  // namespace
}  // namespace dsserve::test
