// Decode with and without CUDA graphs: the golden fixtures decoded token by token, through recorded
// graphs and eagerly, at page sizes 1 and 64, held to the golden bounds, and through graphs over an
// FP8 latent cache; speculative decoding with its verify forward replayed from graphs giving the
// greedy tokens of plain decoding; and a batch of sequences of different lengths, padded to the next
// recorded size, matching the same batch decoded eagerly.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <optional>

#include "common/test_paths.h"
#include "gpu/gpu_test_util.h"
#include "io/safetensors.h"
#include "runtime/batch_builder.h"
#include "runtime/engine.h"
#include "runtime/scheduler.h"
#include "runtime/speculative/eagle.h"

#include <condition_variable>
#include <mutex>

namespace dsserve::test {
namespace {

// A CUDA model whose cache has one page beyond the pool's: the trash page the graphs pad into;
// cache_dtype as DeepseekV3Model::allocate_cache (unset: BF16).
TestModel graph_model(const std::string& dir, int page_size, bool graphs,
                      std::optional<DType> cache_dtype = std::nullopt) {
  TestModel m;
  m.backend = make_gpu_backend();
  ModelConfig cfg = ModelConfig::load(dir);
  m.source = std::make_unique<CheckpointWeights>(dir, cfg);
  m.model = std::make_unique<ReplicaRunner>(cfg, *m.backend, *m.source, 4096);
  const int64_t pages = (4096 + page_size - 1) / page_size;
  m.pool = std::make_unique<PagePool>(pages, page_size);
  m.cache = m.model->make_cache(pages + 1, page_size, false, cache_dtype);
  if (graphs) {
    GraphPlan plan;
    plan.trash_slot = int32_t(pages * page_size);
    plan.decode_sizes = {1, 2, 4, 8};
    EXPECT_TRUE(m.model->capture_graphs(plan, m.cache, m.mtp_cache));
    EXPECT_EQ(m.model->recorded_graphs().decode, (std::vector<int>{1, 2, 4, 8}));
  }
  return m;
}

struct Case {
  std::string fixture;
  int page_size;
  bool graphs;
};

class CudaGraphGolden : public ::testing::TestWithParam<Case> {};

TEST_P(CudaGraphGolden, DecodeMatchesReference) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  const Case c = GetParam();
  const std::string dir = fixtures_dir() + "/" + c.fixture;
  TestModel m = graph_model(dir, c.page_size, c.graphs);
  Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
  LogprobStats s;
  for (int k = 0; k < 5; ++k) {
    std::string p = "prompt." + std::to_string(k) + ".";
    Tensor ids_t = ref.view(p + "ids");
    std::vector<int32_t> ids(ids_t.ptr<int32_t>(), ids_t.ptr<int32_t>() + ids_t.numel());
    const int64_t before = m.model->recorded_graphs().decode_replays;
    RunResult r = run_on(m, ids, RunOptions{0, 1});  // the first token prefilled, every other one a graph replay
    EXPECT_EQ(m.model->recorded_graphs().decode_replays - before, c.graphs ? int64_t(ids.size()) - 1 : 0);
    s.add(r.logits, rows_of(ref.view(p + "logits")));
  }
  std::printf("[ stats    ] %s page %d decode %s: %s\n", c.fixture.c_str(), c.page_size,
              c.graphs ? "through graphs" : "eager", s.str().c_str());
  const bool fp8 = c.fixture == "tiny-v3-fp8";
  EXPECT_LE(s.quantile(0.5), fp8 ? 0.25 : 0.04) << s.str();
  EXPECT_LE(s.quantile(0.9), fp8 ? 1.0 : 0.25) << s.str();
  EXPECT_GE(s.agreement(), fp8 ? 0.88 : 0.92) << s.str();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaGraphGolden,
                         ::testing::Values(Case{"tiny-v3-bf16", 1, true}, Case{"tiny-v3-bf16", 64, true},
                                           Case{"tiny-v3-fp8", 1, true}, Case{"tiny-v3-fp8", 64, true},
                                           Case{"tiny-v3-bf16", 1, false}, Case{"tiny-v3-bf16", 64, false},
                                           Case{"tiny-v3-fp8", 1, false}, Case{"tiny-v3-fp8", 64, false}),
                         [](const auto& info) {
                           return (info.param.fixture == "tiny-v3-bf16" ? std::string("bf16") : std::string("fp8")) +
                                  "_page" + std::to_string(info.param.page_size) +
                                  (info.param.graphs ? "_graphs" : "_eager");
                         });

// The same through graphs recorded over an FP8 (e4m3) latent cache: every decode token a replay, the
// logits within the bounds of fp8_kv_cache_gpu_test.cpp's fixtures with that cache (estimates until
// measured: the CPU oracle's e4m3 cache error plus the GPU arithmetic's).
TEST(CudaGraphs, Fp8CacheDecodeThroughGraphsMatchesReference) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  for (std::string fixture : {"tiny-v3-bf16", "tiny-v3-fp8"}) {
    const std::string dir = fixtures_dir() + "/" + fixture;
    TestModel m = graph_model(dir, 64, true, DType::F8_E4M3);
    ASSERT_EQ(m.cache.data.dtype(), DType::F8_E4M3);
    Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
    LogprobStats s;
    for (int k = 0; k < 5; ++k) {
      std::string p = "prompt." + std::to_string(k) + ".";
      Tensor ids_t = ref.view(p + "ids");
      std::vector<int32_t> ids(ids_t.ptr<int32_t>(), ids_t.ptr<int32_t>() + ids_t.numel());
      const int64_t before = m.model->recorded_graphs().decode_replays;
      RunResult r = run_on(m, ids, RunOptions{0, 1});
      EXPECT_EQ(m.model->recorded_graphs().decode_replays - before, int64_t(ids.size()) - 1);
      s.add(r.logits, rows_of(ref.view(p + "logits")));
    }
    std::printf("[ stats    ] %s fp8 cache decode through graphs: %s\n", fixture.c_str(), s.str().c_str());
    const bool w8a8 = fixture == "tiny-v3-fp8";
    EXPECT_LE(s.quantile(0.5), w8a8 ? 0.3 : 0.12) << fixture << ": " << s.str();
    EXPECT_LE(s.quantile(0.9), w8a8 ? 1.2 : 0.5) << fixture << ": " << s.str();
    EXPECT_GE(s.agreement(), w8a8 ? 0.85 : 0.9) << fixture << ": " << s.str();
  }
}

// Five sequences of different lengths decoded together for several steps: replayed from the graph
// of 8 (three padding rows) and run eagerly give the same greedy tokens and close logits.
TEST(CudaGraphs, PaddedBatchMatchesEager) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  const std::string dir = fixtures_dir() + "/tiny-v3-bf16";
  for (int page_size : {1, 16}) {
    TestModel graphed = graph_model(dir, page_size, true), eager = graph_model(dir, page_size, false);
    const std::vector<int> lens = {3, 17, 40, 9, 65};
    const int B = int(lens.size());
    Rng rng(7);
    std::uniform_int_distribution<int32_t> tok(0, int32_t(graphed.model->config().vocab_size) - 1);
    std::vector<std::vector<int32_t>> prompts;
    for (int n : lens) {
      std::vector<int32_t> p(static_cast<size_t>(n), 0);
      for (auto& t : p) t = tok(rng);
      prompts.push_back(p);
    }
    struct Side {
      TestModel* m;
      std::vector<SequencePages> seqs;
      std::vector<int32_t> next;
    };
    Side sides[2] = {{&graphed, std::vector<SequencePages>(size_t(B)), {}}, {&eager, std::vector<SequencePages>(size_t(B)), {}}};
    const int steps = 6;
    double worst = 0;
    for (Side& side : sides) {
      std::vector<SequenceChunk> chunks;
      for (int b = 0; b < B; ++b) {
        ASSERT_TRUE(side.seqs[size_t(b)].reserve(*side.m->pool, lens[size_t(b)] + steps + 1));
        SequenceChunk ch;
        ch.pages = &side.seqs[size_t(b)];
        ch.prefix_len = 0;
        ch.tokens = prompts[size_t(b)];
        ch.logit_offsets = {lens[size_t(b)] - 1};
        chunks.push_back(ch);
      }
      auto logits = rows_of(side.m->backend->to_host_f32(
          side.m->model->forward(build_forward_batch(chunks, page_size, AttentionMode::Expanded), side.m->cache).logits));
      for (auto& row : logits) side.next.push_back(int32_t(std::max_element(row.begin(), row.end()) - row.begin()));
    }
    ASSERT_EQ(sides[0].next, sides[1].next);  // identical prefills
    const int64_t replays0 = graphed.model->recorded_graphs().decode_replays;
    for (int i = 0; i < steps; ++i) {
      std::vector<std::vector<float>> rows[2];
      for (int k = 0; k < 2; ++k) {
        Side& side = sides[k];
        std::vector<SequenceChunk> chunks;
        for (int b = 0; b < B; ++b) {
          SequenceChunk ch;
          ch.pages = &side.seqs[size_t(b)];
          ch.prefix_len = lens[size_t(b)] + i;
          ch.tokens = {side.next[size_t(b)]};
          ch.logit_offsets = {0};
          chunks.push_back(ch);
        }
        rows[k] = rows_of(side.m->backend->to_host_f32(
            side.m->model->forward(build_forward_batch(chunks, page_size, AttentionMode::Absorbed), side.m->cache).logits));
        ASSERT_EQ(int(rows[k].size()), B);
      }
      for (int b = 0; b < B; ++b) {
        worst = std::max(worst, max_topk_logprob_diff(rows[0][size_t(b)], rows[1][size_t(b)]));
        for (int k = 0; k < 2; ++k) {
          const auto& row = rows[k][size_t(b)];
          sides[k].next[size_t(b)] = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
        }
      }
      EXPECT_EQ(sides[0].next, sides[1].next) << "page size " << page_size << ", step " << i;
    }
    EXPECT_EQ(graphed.model->recorded_graphs().decode_replays - replays0, steps);
    EXPECT_EQ(eager.model->recorded_graphs().decode_replays, 0);
    std::printf("[ stats    ] page %d: largest top-5 |dlogprob| graph vs eager %.2e\n", page_size, worst);
    EXPECT_LE(worst, 0.05) << "page size " << page_size;  // only the split of the key range differs
    for (Side& side : sides)
      for (auto& s : side.seqs) s.release_all(*side.m->pool);
  }
}

// Greedy speculative decoding (chain and tree) on a fixture with the decode and verify forwards
// recorded: every request's tokens equal plain eager decoding's, and verify graphs were replayed.
TEST(CudaGraphs, SpeculativeVerifyAndDraftThroughGraphsMatchPlainDecoding) {
  DS_REQUIRE_GPU();
  DS_REQUIRE_FIXTURES();
  const std::string dir = fixtures_dir() + "/tiny-v3-bf16";
  auto run = [&](bool graphs, int steps, int topk, int draft, int64_t* verify_replays, int64_t* mtp_replays) {
    TestModel m;
    m.backend = make_gpu_backend();
    ModelConfig cfg = ModelConfig::load(dir);
    m.source = std::make_unique<CheckpointWeights>(dir, cfg);
    m.model = std::make_unique<ReplicaRunner>(cfg, *m.backend, *m.source, 4096);
    const int page_size = 16;
    const int64_t pages = 256;
    m.pool = std::make_unique<PagePool>(pages, page_size);
    m.cache = m.model->make_cache(pages + 1, page_size, false, std::nullopt);
    m.mtp_cache = m.model->make_cache(pages + 1, page_size, /*mtp=*/true, std::nullopt);
    const int32_t trash = int32_t(pages * page_size);
    SchedulerOptions so;
    if (steps > 0) {
      so.speculative.algorithm = "EAGLE";
      so.speculative.num_steps = steps;
      so.speculative.eagle_topk = topk;
      so.speculative.num_draft_tokens = draft;
      so.speculative.validate_and_default();
      so.mtp_cache = &m.mtp_cache;
    }
    if (graphs) {
      GraphPlan plan;
      plan.trash_slot = trash;
      plan.decode_sizes = {1, 2, 4};
      if (steps > 0) {
        plan.verify_sizes = plan.mtp_sizes = {1, 2, 4};
        plan.verify_tokens = so.speculative.num_draft_tokens;
      }
      EXPECT_TRUE(m.model->capture_graphs(plan, m.cache, m.mtp_cache));
      const RecordedGraphs got = m.model->recorded_graphs();
      EXPECT_EQ(got.decode, plan.decode_sizes);
      EXPECT_EQ(got.verify, plan.verify_sizes);
      EXPECT_EQ(got.mtp, plan.mtp_sizes);
    }
    std::unique_ptr<Engine> engine = create_engine(*m.model, m.cache, *m.pool, so);
    std::vector<std::vector<int32_t>> prompts = {{0, 100, 200, 300}, {0, 5, 6, 7, 8, 9, 10, 11}, {0, 1242, 17}};
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::vector<int32_t>> out(prompts.size());
    size_t done = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerationRequest r;
      r.rid = "r" + std::to_string(i);
      r.input_ids = prompts[i];
      r.sampling.temperature = 0;
      r.sampling.max_new_tokens = 20;
      r.sampling.ignore_eos = true;
      engine->submit(r, [&, i](RequestOutput ev) {
        std::lock_guard lk(mu);
        out[i].insert(out[i].end(), ev.new_token_ids.begin(), ev.new_token_ids.end());
        if (ev.finished) ++done, cv.notify_all();
      });
    }
    {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return done == prompts.size(); });
    }
    engine->shutdown();
    if (verify_replays) *verify_replays = m.model->recorded_graphs().verify_replays;
    if (mtp_replays) *mtp_replays = m.model->recorded_graphs().mtp_replays;
    return out;
  };
  const auto plain = run(false, 0, 0, 0, nullptr, nullptr);
  struct Setting {
    int steps, topk, draft;
  };
  for (Setting st : {Setting{3, 1, 4}, Setting{2, 2, 4}}) {
    int64_t replays = 0, mtp_replays = 0;
    auto got = run(true, st.steps, st.topk, st.draft, &replays, &mtp_replays);
    EXPECT_EQ(got, plain) << "steps " << st.steps << " topk " << st.topk;
    EXPECT_GT(replays, 0) << "steps " << st.steps << " topk " << st.topk << ": no verify forward was replayed";
    if (st.topk == 1) {  // chain steps after the first are one token per sequence: the recorded draft step
      EXPECT_GT(mtp_replays, 0) << "steps " << st.steps << ": no MTP draft step was replayed";
    }
    std::printf("[ stats    ] speculative steps %d topk %d: %lld verify forwards and %lld MTP draft steps replayed "
                "from graphs\n", st.steps, st.topk, static_cast<long long>(replays), static_cast<long long>(mtp_replays));
  }
}

}  // namespace
}  // namespace dsserve::test
