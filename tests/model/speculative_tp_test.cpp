// Speculative decoding (EAGLE with the MTP layer) over tensor-parallel ranks on the CPU backend:
// every rank runs its shard of the MTP layer over its own MTP cache, and accepted tree nodes move
// in every rank's caches. Greedy output must equal plain decoding with the same split (TP2 and
// TP2 + EP2; chains and trees), on a random small-vocabulary model, where drafts really get
// accepted, and on a fixture checkpoint.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "common/engine_runs.h"
#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/scheduler.h"

namespace dsserve {
namespace {

// One tensor-parallel model, its caches and an engine over them (speculative when steps > 0).
struct TpEngine {
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<ReplicaRunner> model;
  std::unique_ptr<PagePool> pool;
  LatentCache cache, mtp_cache;
  std::unique_ptr<Engine> engine;

  TpEngine(std::unique_ptr<WeightSource> w, const ModelConfig& cfg, int world, bool expert_parallel, int page_size,
           int steps, int topk, int draft_tokens)
      : weights(std::move(w)) {
    LoadOptions lo;
    lo.load_mtp = steps > 0;
    lo.shard.expert_parallel = expert_parallel;
    model = std::make_unique<ReplicaRunner>(cfg, create_backends(DeviceKind::Cpu, {world}),
                                                  *weights, 2048, lo);
    pool = std::make_unique<PagePool>((4096 + page_size - 1) / page_size, page_size);
    cache = model->make_cache(cache_pages_for(*pool), page_size, false, std::nullopt);
    SchedulerOptions o;
    o.chunked_prefill_size = 7;  // chunked prefill too
    if (steps > 0) {
      o.speculative.algorithm = "EAGLE";
      o.speculative.num_steps = steps;
      o.speculative.eagle_topk = topk;
      o.speculative.num_draft_tokens = draft_tokens;
      mtp_cache = model->make_cache(cache_pages_for(*pool), page_size, true, std::nullopt);
      o.mtp_cache = &mtp_cache;
    }
    engine = create_engine(*model, cache, *pool, o);
  }
  ~TpEngine() { engine->shutdown(); }
};

std::vector<std::vector<int32_t>> run_all(Engine& e, const std::vector<std::vector<int32_t>>& prompts, int max_new) {
  return test::tokens_to_completion(e, test::greedy_requests(prompts, max_new));
}

struct Setting {
  int steps, topk, draft;
};
const Setting kSettings[] = {{3, 1, 4}, {3, 2, 6}};

TEST(SpeculativeTensorParallel, RandomModelMatchesPlainDecodingWithTheSameSplit) {
  nlohmann::json c = test::tiny_model_config();
  c["vocab_size"] = 6;  // drafts agree often in a 6-token vocabulary
  const ModelConfig cfg = ModelConfig::parse(c.dump(), "small vocab");
  const std::vector<std::vector<int32_t>> prompts = {{0, 3, 2, 5, 1}, {4, 4, 2}, {0, 1, 2, 3, 4, 5, 0, 1, 2}, {5}};
  for (bool ep : {false, true}) {
    TpEngine plain(std::make_unique<DummyWeights>(cfg, 21), cfg, 2, ep, 16, 0, 0, 0);
    const auto want = run_all(*plain.engine, prompts, 20);
    for (int page_size : {1, 16}) {
      for (Setting st : kSettings) {
        TpEngine spec(std::make_unique<DummyWeights>(cfg, 21), cfg, 2, ep, page_size, st.steps, st.topk, st.draft);
        EXPECT_EQ(run_all(*spec.engine, prompts, 20), want)
            << "TP2" << (ep ? " EP2" : "") << " page " << page_size << " steps " << st.steps << " topk " << st.topk;
        const EngineStats s = spec.engine->stats();
        EXPECT_GT(s.spec_verify_total, 0);
        EXPECT_GT(s.spec_accept_length(), 1.05) << "drafts were accepted (steps " << st.steps << ", topk " << st.topk << ")";
      }
    }
  }
}

TEST(SpeculativeTensorParallel, FixtureMatchesPlainDecodingWithTheSameSplit) {
  DS_REQUIRE_FIXTURES();
  const std::string dir = test::fixtures_dir() + "/tiny-v3-fp8";
  const ModelConfig cfg = ModelConfig::load(dir);
  const std::vector<std::vector<int32_t>> prompts = {{0, 100, 200, 300}, {0, 5, 6, 7, 8, 9, 10, 11}, {0, 1242, 17}};
  TpEngine plain(std::make_unique<CheckpointWeights>(dir, cfg), cfg, 2, false, 16, 0, 0, 0);
  const auto want = run_all(*plain.engine, prompts, 16);
  for (Setting st : kSettings) {
    TpEngine spec(std::make_unique<CheckpointWeights>(dir, cfg), cfg, 2, false, 16, st.steps, st.topk, st.draft);
    EXPECT_EQ(run_all(*spec.engine, prompts, 16), want) << "steps " << st.steps << " topk " << st.topk;
    EXPECT_GT(spec.engine->stats().spec_verify_total, 0);
  }
}

}  // namespace
}  // namespace dsserve
