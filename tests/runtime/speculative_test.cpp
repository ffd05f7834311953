// Speculative decoding (EAGLE with the MTP layer) on the CPU backend: greedy output identical to
// decoding without it (fixtures, quantized ones included, and random models, batches of 1 to 32, chunked prefill, prefix
// hits, page sizes 1 and 64), drafts that really get accepted (a small vocabulary makes agreement
// common), the draft's MTP logits against the fixtures, and the sampled distribution unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <array>
#include <random>

#include "backend/backend.h"
#include "common/engine_runs.h"
#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/weight_source.h"
#include "parallel/replica_runner.h"
#include "runtime/batch_builder.h"
#include "runtime/scheduler.h"

namespace dsserve {
namespace {

struct SpecHarness {
  ModelConfig cfg;
  std::unique_ptr<Backend> backend = create_backend(DeviceKind::Cpu);
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<ReplicaRunner> model;
  std::unique_ptr<PagePool> pool;
  LatentCache cache, mtp_cache;
  std::unique_ptr<Engine> engine;

  // cache_dtype: the latent caches' element type (unset: float32; F8_E4M3 / F8_E5M2: an FP8 cache).
  SpecHarness(std::unique_ptr<WeightSource> w, ModelConfig c, int page_size, SchedulerOptions opt,
              std::optional<DType> cache_dtype = std::nullopt)
      : cfg(std::move(c)), weights(std::move(w)) {
    model = std::make_unique<ReplicaRunner>(cfg, *backend, *weights, 2048);
    pool = std::make_unique<PagePool>((4096 + page_size - 1) / page_size, page_size);
    cache = model->make_cache(cache_pages_for(*pool), page_size, false, cache_dtype);
    mtp_cache = model->make_cache(cache_pages_for(*pool), page_size, true, cache_dtype);
    opt.mtp_cache = &mtp_cache;
    engine = create_engine(*model, cache, *pool, opt);
  }
  ~SpecHarness() { engine->shutdown(); }
};

ModelConfig small_vocab_config(int vocab) {
  nlohmann::json c = test::tiny_model_config();
  c["vocab_size"] = vocab;
  return ModelConfig::parse(c.dump(), "small vocab");
}

SchedulerOptions spec_options(int steps, int chunk = 8192, bool radix = true, int topk = 1, int draft_tokens = 0) {
  SchedulerOptions o;
  o.chunked_prefill_size = chunk;
  o.disable_radix_cache = !radix;
  if (steps > 0) {
    o.speculative.algorithm = "EAGLE";
    o.speculative.num_steps = steps;
    o.speculative.eagle_topk = topk;
    o.speculative.num_draft_tokens = draft_tokens;
  }
  return o;
}

// (steps, topk, num_draft_tokens): chains and trees.
const std::vector<std::array<int, 3>> kSettings = {{1, 1, 2}, {3, 1, 4}, {3, 2, 6}, {4, 4, 8}};

std::vector<std::vector<int32_t>> run_all(Engine& e, const std::vector<GenerationRequest>& reqs,
                                          std::vector<int>* verify_ct = nullptr) {
  std::vector<std::vector<int32_t>> out;
  if (verify_ct) verify_ct->clear();
  for (auto& c : test::run_to_completion(e, reqs)) {
    if (verify_ct) verify_ct->push_back(c.spec_verify_ct);
    out.push_back(std::move(c.ids));
  }
  return out;
}

GenerationRequest request(const std::string& rid, std::vector<int32_t> ids, int max_new, float temperature = 0,
                          std::optional<uint64_t> seed = std::nullopt) {
  GenerationRequest r;
  r.rid = rid;
  r.input_ids = std::move(ids);
  r.sampling.temperature = temperature;
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  r.sampling.seed = seed;
  return r;
}

std::vector<int32_t> ints(const Tensor& t) { return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()}; }

TEST(Speculative, GreedyOnFixturesEqualsTheReference) {
  DS_REQUIRE_FIXTURES();
  for (std::string name : {"tiny-v3-bf16", "tiny-v3-fp8"}) {
    std::string dir = test::fixtures_dir() + "/" + name;
    Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
    ModelConfig cfg = ModelConfig::load(dir);
    for (int page_size : {1, 64}) {
      for (auto [steps, topk, draft] : kSettings) {
        SpecHarness h(std::make_unique<CheckpointWeights>(dir, cfg), cfg, page_size,
                      spec_options(steps, 7, true, topk, draft));
        for (int k = 0; k < 5; ++k) {
          auto ids = ints(ref.view("prompt." + std::to_string(k) + ".ids"));
          auto greedy = ints(ref.view("prompt." + std::to_string(k) + ".greedy"));
          // Twice: the second run reuses the first one's cached prefix.
          for (int rep = 0; rep < 2; ++rep)
            EXPECT_EQ(run_all(*h.engine, {request("p" + std::to_string(k) + std::to_string(rep), ids, 24)})[0], greedy)
                << name << " prompt " << k << " page size " << page_size << " steps " << steps << " topk " << topk
                << " run " << rep;
        }
      }
    }
  }
}

TEST(Speculative, GreedyOnQuantizedFixturesEqualsTheReference) {
  // AWQ, channel INT8 and block INT8 (the CPU oracle dequantizes each): a tree at KV page size 1, a
  // chain at page size 64.
  DS_REQUIRE_FIXTURES();
  for (std::string name : {"tiny-v3-awq", "tiny-v3-int8-channel", "tiny-v3-int8-block"}) {
    std::string dir = test::fixtures_dir() + "/" + name;
    Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
    ModelConfig cfg = ModelConfig::load(dir, "", test::fixture_quantization(dir));
    for (auto [page_size, steps, topk, draft] : {std::array<int, 4>{1, 3, 2, 6}, std::array<int, 4>{64, 3, 1, 4}}) {
      SpecHarness h(std::make_unique<CheckpointWeights>(dir, cfg), cfg, page_size,
                    spec_options(steps, 7, true, topk, draft));
      std::vector<GenerationRequest> reqs;
      for (int k = 0; k < 5; ++k)
        reqs.push_back(request("p" + std::to_string(k), ints(ref.view("prompt." + std::to_string(k) + ".ids")), 24));
      auto got = run_all(*h.engine, reqs);
      for (int k = 0; k < 5; ++k)
        EXPECT_EQ(got[k], ints(ref.view("prompt." + std::to_string(k) + ".greedy")))
            << name << " prompt " << k << " page size " << page_size << " steps " << steps << " topk " << topk;
    }
  }
}

TEST(Speculative, DraftMtpLogitsMatchTheFixture) {
  DS_REQUIRE_FIXTURES();
  std::string dir = test::fixtures_dir() + "/tiny-v3-bf16";
  Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
  ModelConfig cfg = ModelConfig::load(dir);
  auto backend = create_backend(DeviceKind::Cpu);
  CheckpointWeights w(dir, cfg);
  ReplicaRunner model(cfg, *backend, w, 1024);
  PagePool pool(512, 16);
  LatentCache cache = model.make_cache(cache_pages_for(pool), 16, false, std::nullopt);
  LatentCache mtp = model.make_cache(cache_pages_for(pool), 16, true, std::nullopt);
  SpeculativeOptions so;
  so.algorithm = "EAGLE";
  so.eagle_topk = 4;  // four ranked draft tokens per row to compare
  so.validate_and_default();
  EagleWorker eagle(model, mtp, int32_t(pool.num_pages() * 16), so);
  for (int k = 1; k < 5; ++k) {
    auto ids = ints(ref.view("prompt." + std::to_string(k) + ".ids"));
    Tensor want = ref.view("prompt." + std::to_string(k) + ".mtp_logits");
    RequestState r;
    r.g.input_ids = ids;
    ASSERT_TRUE(r.pages.reserve(pool, int64_t(ids.size()) + 1));
    SequenceChunk c{&r.pages, 0, ids, {}};
    ForwardOutput fo = model.forward(build_forward_batch({c}, 16, AttentionMode::Expanded), cache);
    std::vector<DraftRow> rows;
    for (size_t t = 0; t + 1 < ids.size(); ++t) rows.push_back({int64_t(t), ids[t + 1]});
    ASSERT_EQ(fo.hidden.size(0), int64_t(ids.size()));
    HiddenRows h{HiddenRows::Target, {}};  // the target's hidden states at positions 0 .. T-2, on the device
    for (size_t t = 0; t + 1 < ids.size(); ++t) h.rows.push_back(int32_t(t));
    auto last = eagle.extend({&r}, {rows}, h);
    // The draft returns its row's best tokens with their log-probabilities: the reference's top
    // tokens of log_softmax(mtp_logits), in order, with the same values.
    const int64_t V = want.size(1), T = want.size(0);
    const float* wl = want.ptr<float>() + (T - 1) * V;
    double mx = wl[0], sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(wl[v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(wl[v]) - mx);
    const double lse = mx + std::log(sum);
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return wl[x] > wl[y]; });
    ASSERT_EQ(last[0].top.size(), size_t(so.eagle_topk)) << "prompt " << k;
    for (size_t j = 0; j < last[0].top.size(); ++j) {
      EXPECT_EQ(last[0].top[j].second, order[j]) << "prompt " << k << ", rank " << j;
      EXPECT_NEAR(last[0].top[j].first, double(wl[order[j]]) - lse, 1e-3)
          << "prompt " << k << ": last MTP row through the shifted MTP cache, rank " << j;
    }
    r.pages.release_all(pool);
  }
}

std::vector<GenerationRequest> random_batch(int n, int vocab, int max_new, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<GenerationRequest> reqs;
  std::vector<int32_t> shared_prefix;
  for (int i = 0; i < 40; ++i) shared_prefix.push_back(int32_t(g() % vocab));
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> ids = (i % 3 == 0) ? shared_prefix : std::vector<int32_t>{};
    int len = 3 + int(g() % 50);
    for (int j = 0; j < len; ++j) ids.push_back(int32_t(g() % vocab));
    reqs.push_back(request("r" + std::to_string(i), ids, max_new));
  }
  return reqs;
}

TEST(Speculative, RandomModelsBatchesOfOneToThirtyTwoMatchPlainDecoding) {
  const ModelConfig cfg = small_vocab_config(6);  // drafts agree often in a 6-token vocabulary
  for (int batch : {1, 5, 32}) {
    auto reqs = random_batch(batch, 6, 20, uint32_t(batch));
    SpecHarness plain(std::make_unique<DummyWeights>(cfg, 21), cfg, 1, spec_options(0));
    auto want = run_all(*plain.engine, reqs);
    for (int page_size : {1, 64}) {
      for (auto [steps, topk, draft] : kSettings) {
        SpecHarness h(std::make_unique<DummyWeights>(cfg, 21), cfg, page_size, spec_options(steps, 16, true, topk, draft));
        std::vector<int> verify;
        auto got = run_all(*h.engine, reqs, &verify);
        for (int i = 0; i < batch; ++i)
          EXPECT_EQ(got[i], want[i]) << "batch " << batch << " request " << i << " page " << page_size << " steps "
                                     << steps << " topk " << topk;
        EngineStats s = h.engine->stats();
        EXPECT_GT(s.spec_verify_total, 0);
        EXPECT_GT(s.spec_accept_length(), 1.05) << "drafts were accepted (batch " << batch << ", steps " << steps
                                                << ", topk " << topk << ")";
        EXPECT_LE(s.spec_accept_length(), steps + 1.0);
        for (int i = 0; i < batch; ++i) EXPECT_GE(verify[i], 20 / (steps + 1)) << "spec_verify_ct";
      }
    }
  }
}

TEST(Speculative, Fp8CacheMatchesPlainDecodingWithTheFp8Cache) {
  // The verify forward writes draft tokens' latents (rounded to FP8) and accepted ones move slots
  // (one-byte rows): greedy output must equal plain decoding over the same FP8 cache.
  const ModelConfig cfg = small_vocab_config(6);
  for (DType t : {DType::F8_E4M3, DType::F8_E5M2}) {
    auto reqs = random_batch(5, 6, 20, 77);
    SpecHarness plain(std::make_unique<DummyWeights>(cfg, 21), cfg, 1, spec_options(0), t);
    ASSERT_EQ(plain.cache.data.dtype(), t);
    auto want = run_all(*plain.engine, reqs);
    for (int page_size : {1, 64}) {
      for (auto [steps, topk, draft] : kSettings) {
        if (t == DType::F8_E5M2 && (page_size != 1 || topk == 1)) continue;  // e5m2: the trees, pages of 1
        SpecHarness h(std::make_unique<DummyWeights>(cfg, 21), cfg, page_size, spec_options(steps, 16, true, topk, draft), t);
        ASSERT_EQ(h.mtp_cache.data.dtype(), t);
        auto got = run_all(*h.engine, reqs);
        for (size_t i = 0; i < reqs.size(); ++i)
          EXPECT_EQ(got[i], want[i]) << dtype_name(t) << " request " << i << " page " << page_size << " steps " << steps
                                     << " topk " << topk;
        EXPECT_GT(h.engine->stats().spec_accept_length(), 1.05) << "drafts were accepted";
      }
    }
  }
}

TEST(Speculative, Fp8CacheOnFixturesMatchesPlainFp8Decoding) {
  DS_REQUIRE_FIXTURES();
  for (std::string name : {"tiny-v3-bf16", "tiny-v3-fp8"}) {
    std::string dir = test::fixtures_dir() + "/" + name;
    Checkpoint ref = Checkpoint::open(dir + "/reference.safetensors");
    ModelConfig cfg = ModelConfig::load(dir);
    std::vector<GenerationRequest> reqs;
    for (int k = 0; k < 5; ++k)
      reqs.push_back(request("p" + std::to_string(k), ints(ref.view("prompt." + std::to_string(k) + ".ids")), 24));
    SpecHarness plain(std::make_unique<CheckpointWeights>(dir, cfg), cfg, 16, spec_options(0), DType::F8_E4M3);
    auto want = run_all(*plain.engine, reqs);
    for (auto [steps, topk, draft] : {std::array<int, 3>{3, 2, 6}}) {
      SpecHarness h(std::make_unique<CheckpointWeights>(dir, cfg), cfg, 16, spec_options(steps, 7, true, topk, draft),
                    DType::F8_E4M3);
      auto got = run_all(*h.engine, reqs);
      for (size_t i = 0; i < reqs.size(); ++i)
        EXPECT_EQ(got[i], want[i]) << name << " prompt " << i << " steps " << steps << " topk " << topk;
    }
  }
}

TEST(Speculative, PenaltiesAndMinNewTokensCountTheDraftPathAsPlainDecodingDoes) {
  // Every verify row is chosen as if its ancestors had been accepted: under greedy choice with
  // penalties, stop tokens suppressed until min_new_tokens and a logit bias, outputs equal plain
  // decoding exactly.
  const ModelConfig cfg = small_vocab_config(6);
  auto reqs = random_batch(6, 6, 16, 41);
  for (size_t i = 0; i < reqs.size(); ++i) {
    SamplingParams& sp = reqs[i].sampling;
    sp.repetition_penalty = i % 2 ? 1.4f : 1.0f;
    sp.frequency_penalty = i % 3 == 0 ? 0.3f : 0.0f;
    sp.presence_penalty = i % 3 == 1 ? 0.5f : 0.0f;
    sp.logit_bias = {{int32_t(i % 6), 0.25f}};
    sp.stop_token_ids = {int32_t((i + 2) % 6)};
    sp.min_new_tokens = 8;
  }
  SpecHarness plain(std::make_unique<DummyWeights>(cfg, 21), cfg, 1, spec_options(0));
  auto want = run_all(*plain.engine, reqs);
  for (auto [steps, topk, draft] : kSettings) {
    SpecHarness h(std::make_unique<DummyWeights>(cfg, 21), cfg, 1, spec_options(steps, 16, true, topk, draft));
    auto got = run_all(*h.engine, reqs);
    for (size_t i = 0; i < reqs.size(); ++i)
      EXPECT_EQ(got[i], want[i]) << "request " << i << " steps " << steps << " topk " << topk;
  }
}

TEST(Speculative, TightCacheRetractsWithoutChangingOutputs) {
  const ModelConfig cfg = small_vocab_config(6);
  auto reqs = random_batch(8, 6, 24, 77);
  SpecHarness plain(std::make_unique<DummyWeights>(cfg, 5), cfg, 4, spec_options(0));
  auto want = run_all(*plain.engine, reqs);
  auto backend = create_backend(DeviceKind::Cpu);
  DummyWeights w(cfg, 5);
  ReplicaRunner model(cfg, *backend, w, 2048);
  PagePool pool(60, 4);  // 240 tokens for 8 requests of up to ~116: forces retraction
  LatentCache cache = model.make_cache(cache_pages_for(pool), 4, false, std::nullopt),
              mtp = model.make_cache(cache_pages_for(pool), 4, true, std::nullopt);
  SchedulerOptions o = spec_options(3, 16, false, 2, 6);
  o.mtp_cache = &mtp;
  auto engine = create_engine(model, cache, pool, o);
  auto got = run_all(*engine, reqs);
  EXPECT_EQ(got, want);
  EXPECT_GT(engine->stats().retractions_total, 0);
  engine->shutdown();
  EXPECT_EQ(pool.num_free(), pool.num_pages());
}

// Chi-square statistic of two histograms (pooled).
double chi_square(const std::map<int, int>& a, const std::map<int, int>& b, int* dof) {
  std::map<int, std::pair<int, int>> all;
  for (auto& [k, v] : a) all[k].first = v;
  for (auto& [k, v] : b) all[k].second = v;
  double na = 0, nb = 0, chi = 0;
  for (auto& [k, v] : all) na += v.first, nb += v.second;
  for (auto& [k, v] : all) {
    double tot = v.first + v.second, ea = tot * na / (na + nb), eb = tot * nb / (na + nb);
    chi += (v.first - ea) * (v.first - ea) / ea + (v.second - eb) * (v.second - eb) / eb;
  }
  *dof = int(all.size()) - 1;
  return chi;
}

TEST(Speculative, SamplingKeepsTheTargetDistribution) {
  // The 3rd generated token passes through verification; its distribution over 600 seeded runs
  // with and without speculation must agree. Chi-square at a false-alarm rate of 0.1%: with at most
  // 5 degrees of freedom (6 tokens) the critical value is 20.5.
  const ModelConfig cfg = small_vocab_config(6);
  std::vector<int32_t> prompt{2, 3, 4, 5, 2, 3};
  auto histogram = [&](int steps) {
    SpecHarness h(std::make_unique<DummyWeights>(cfg, 9), cfg, 1,
                  steps == 3 ? spec_options(3, 8192, true, 2, 5) : spec_options(steps));
    std::vector<GenerationRequest> reqs;
    for (int i = 0; i < 600; ++i)
      reqs.push_back(request("s" + std::to_string(i), prompt, 3, 1.0f, uint64_t(1000 + i + steps * 100000)));
    std::map<int, int> hist;
    for (auto& out : run_all(*h.engine, reqs)) hist[out[2]]++;
    return hist;
  };
  auto plain = histogram(0), spec = histogram(2), tree = histogram(3);
  int dof_tree = 0;
  EXPECT_LT(chi_square(plain, tree, &dof_tree), 20.5) << "tree drafting, degrees of freedom " << dof_tree;
  int dof = 0;
  double chi = chi_square(plain, spec, &dof);
  ASSERT_GE(dof, 1) << "the model must not be deterministic for this test";
  EXPECT_LT(chi, 20.5) << "degrees of freedom " << dof;
}

TEST(Speculative, InvalidSettingsAreRefused) {
  SpeculativeOptions o;
  o.algorithm = "MEDUSA";
  EXPECT_THROW(o.validate_and_default(), Error);
  o = {};
  o.algorithm = "EAGLE", o.num_steps = 2, o.eagle_topk = 1, o.num_draft_tokens = 8;
  EXPECT_THROW(o.validate_and_default(), Error) << "steps * topk + 1 < num_draft_tokens";
  o = {};
  o.algorithm = "NEXTN";
  o.validate_and_default();
  EXPECT_EQ(o.num_steps, 3);
  EXPECT_EQ(o.eagle_topk, 1);
  EXPECT_EQ(o.num_draft_tokens, 4);
}

}  // namespace
}  // namespace dsserve
