// Data-parallel attention on the CPU backend: D attention groups over N ranks (dp2/tp2, dp2/tp4
// with attention split over 2 ranks inside each group, dp4/tp4), with the routed experts split by
// columns or placed whole on the ranks, give the outputs of the unsplit model. The model-level
// tests drive every group from its own thread with prompts of different lengths (so groups go idle
// at different times, and one test keeps all but one group idle throughout) and compare logits and
// greedy continuations; the engine-level tests run several concurrent requests through the
// DataParallelEngine (chunked prefill, prefix-cache hits, round-robin dispatch, abort, summed stats)
// against one scheduler on one device. Models: a random tiny checkpoint written to disk (the same
// weights for every split) and the fixture checkpoints when present.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/engine_runs.h"
#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "model/checkpoint_writer.h"
#include "model/model_test_util.h"
#include "parallel/data_parallel_model.h"
#include "runtime/batch_builder.h"
#include "runtime/data_parallel_engine.h"
#include "runtime/scheduler.h"

namespace dsserve::test {
namespace {

// The random tiny checkpoint, written once per run.
const std::string& random_checkpoint() {
  static const std::string dir = [] {
    std::string d = temp_dir("dp-random-model");
    write_random_checkpoint(d, ModelConfig::parse(tiny_model_config().dump(), "tiny"), 11);
    return d;
  }();
  return dir;
}

std::string model_dir(const std::string& name) {
  return name == "random" ? random_checkpoint() : fixtures_dir() + "/" + name;
}

struct Split {
  int dp, tp;
  bool ep;
};

void PrintTo(const Split& s, std::ostream* os) {
  *os << "dp" << s.dp << " tp" << s.tp << (s.ep ? " ep" : "");
}

std::string split_name(const Split& s) {
  return "dp" + std::to_string(s.dp) + "_tp" + std::to_string(s.tp) + (s.ep ? "_ep" : "");
}

const std::vector<Split> kSplits = {{2, 2, false}, {2, 2, true}, {2, 4, false},
                                    {2, 4, true},  {4, 4, false}, {4, 4, true}};

std::unique_ptr<DataParallelModel> load_dp(const std::string& dir, const Split& s, WeightSource& src) {
  ModelConfig cfg = ModelConfig::load(dir);
  LoadOptions lo;
  lo.load_mtp = false;
  lo.shard.expert_parallel = s.ep;
  return std::make_unique<DataParallelModel>(cfg, create_backends(DeviceKind::Cpu, {s.tp, s.dp}), s.dp,
                                             src, 4096, lo);
}

std::vector<int32_t> random_ids(int n, uint32_t seed, int vocab) {
  std::mt19937 g(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(2 + g() % uint32_t(vocab - 2));
  return v;
}

// ---------------------------------------------------------------- model level

class DataParallelModelTest : public ::testing::TestWithParam<std::tuple<std::string, Split>> {};

// Group g runs prompt g (lengths differ, so groups finish at different times) through logits_with
// and greedy_with on its own thread; `active` groups only, the rest idle throughout.
void check_groups_against_one_device(const std::string& name, const Split& s, int active) {
  const std::string dir = model_dir(name);
  const int page_size = 16;
  const int64_t pages = 64;
  TestModel one = load_checkpoint_model(dir, page_size, pages * page_size);
  ModelConfig cfg = ModelConfig::load(dir);
  CheckpointWeights src(dir, cfg);
  auto dp = load_dp(dir, s, src);
  dp->allocate_caches(pages, page_size);
  std::vector<std::unique_ptr<PagePool>> pools;
  for (int g = 0; g < s.dp; ++g) pools.push_back(std::make_unique<PagePool>(pages, page_size));

  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> new_tokens;
  for (int g = 0; g < s.dp; ++g) {
    prompts.push_back(random_ids(4 + 7 * g + (g % 2) * 9, 100 + g, cfg.vocab_size));
    new_tokens.push_back(3 + 4 * ((g + 1) % 3));
  }
  // The reference: each prompt alone on one device.
  ForwardFn f_one = [&](const ForwardBatch& b) { return one.model->forward(b, one.cache); };
  std::vector<std::vector<std::vector<float>>> ref_logits(size_t(s.dp));
  std::vector<std::vector<int32_t>> ref_greedy(size_t(s.dp));
  for (int g = 0; g < active; ++g) {
    ref_logits[size_t(g)] = logits_with(f_one, *one.backend, *one.pool, prompts[size_t(g)], int(prompts[size_t(g)].size()) / 2);
    ref_greedy[size_t(g)] = greedy_with(f_one, *one.backend, *one.pool, prompts[size_t(g)], new_tokens[size_t(g)]);
  }

  std::vector<std::vector<std::vector<float>>> got_logits(size_t(s.dp));
  std::vector<std::vector<int32_t>> got_greedy(size_t(s.dp));
  std::vector<std::string> errors(size_t(s.dp));
  for (int g = 0; g < active; ++g) dp->group(g).set_has_work(true);  // as schedulers with requests
  std::vector<std::thread> threads;
  int64_t most_forwards = 0;
  for (int g = 0; g < active; ++g) {
    const int64_t T = int64_t(prompts[size_t(g)].size());
    most_forwards = std::max<int64_t>(most_forwards, 1 + (T - T / 2) + 1 + new_tokens[size_t(g)]);
    threads.emplace_back([&, g] {
      ModelRunner& runner = dp->group(g);
      ForwardFn f = [&](const ForwardBatch& b) { return runner.forward(b, dp->cache(g)); };
      try {
        got_logits[size_t(g)] = logits_with(f, runner.backend(), *pools[size_t(g)], prompts[size_t(g)],
                                            int(prompts[size_t(g)].size()) / 2);
        got_greedy[size_t(g)] = greedy_with(f, runner.backend(), *pools[size_t(g)], prompts[size_t(g)],
                                            new_tokens[size_t(g)]);
      } catch (const std::exception& e) {
        errors[size_t(g)] = e.what();
      }
      runner.set_has_work(false);
    });
  }
  for (auto& t : threads) t.join();
  for (int g = 0; g < active; ++g) {
    ASSERT_EQ(errors[size_t(g)], "") << "group " << g;
    ASSERT_EQ(got_logits[size_t(g)].size(), ref_logits[size_t(g)].size()) << "group " << g;
    double worst = 0;
    for (size_t r = 0; r < ref_logits[size_t(g)].size(); ++r)
      worst = std::max(worst, max_topk_logprob_diff(got_logits[size_t(g)][r], ref_logits[size_t(g)][r]));
    EXPECT_LT(worst, 2e-3) << name << " " << split_name(s) << " group " << g;
    EXPECT_EQ(got_greedy[size_t(g)], ref_greedy[size_t(g)]) << name << " " << split_name(s) << " group " << g;
  }
  // Lockstep: every round waited for every group with work, so the rounds are the longest group's forwards.
  EXPECT_EQ(dp->rounds(), most_forwards) << split_name(s);
}

TEST_P(DataParallelModelTest, EveryGroupMatchesOneDevice) {
  const auto& [name, split] = GetParam();
  if (name != "random") DS_REQUIRE_FIXTURES();
  check_groups_against_one_device(name, split, split.dp);
}

TEST_P(DataParallelModelTest, OneGroupWorksWhileTheOthersIdle) {
  const auto& [name, split] = GetParam();
  if (name != "random") DS_REQUIRE_FIXTURES();
  check_groups_against_one_device(name, split, 1);
}

INSTANTIATE_TEST_SUITE_P(Models, DataParallelModelTest,
                         ::testing::Combine(::testing::Values("random", "tiny-v3-bf16", "tiny-v3-fp8"),
                                            ::testing::ValuesIn(kSplits)),
                         [](const auto& info) {
                           std::string m = std::get<0>(info.param);
                           m = m == "random" ? "random" : m == "tiny-v3-bf16" ? "bf16" : "fp8";
                           return m + "_" + split_name(std::get<1>(info.param));
                         });

TEST(DataParallelModelTest, RefusesSplitsThatDoNotDivide) {
  ModelConfig cfg = ModelConfig::parse(tiny_model_config().dump(), "tiny");  // 4 attention heads
  DummyWeights src(cfg, 1);
  LoadOptions lo;
  lo.load_mtp = false;
  EXPECT_THROW(create_backends(DeviceKind::Cpu, {4, 3}), Error);
  try {  // 8 ranks in 1 group: 8 GPUs per attention group for 4 heads
    DataParallelModel dp(cfg, create_backends(DeviceKind::Cpu, {8, 1}), 1, src, 256, lo);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention heads do not divide"), std::string::npos) << e.what();
  }
}

TEST(DataParallelModelTest, ABatchThatCannotRunFailsOnlyItsGroup) {
  const std::string dir = random_checkpoint();
  const int page_size = 16;
  const int64_t pages = 32;
  TestModel one = load_checkpoint_model(dir, page_size, pages * page_size);
  ModelConfig cfg = ModelConfig::load(dir);
  CheckpointWeights src(dir, cfg);
  auto dp = load_dp(dir, {2, 2, false}, src);
  dp->allocate_caches(pages, page_size);
  PagePool pool0(pages, page_size), pool1(pages, page_size);
  const std::vector<int32_t> ids = random_ids(9, 4, cfg.vocab_size);
  ForwardFn f_one = [&](const ForwardBatch& b) { return one.model->forward(b, one.cache); };
  const auto want = greedy_with(f_one, *one.backend, *one.pool, ids, 6);

  dp->group(0).set_has_work(true);
  dp->group(1).set_has_work(true);
  std::vector<int32_t> got;
  std::string error;
  std::thread good([&] {
    ForwardFn f = [&](const ForwardBatch& b) { return dp->group(0).forward(b, dp->cache(0)); };
    got = greedy_with(f, dp->group(0).backend(), pool0, ids, 6);
    dp->group(0).set_has_work(false);
  });
  std::thread bad([&] {
    SequencePages seq;
    ASSERT_TRUE(seq.reserve(pool1, 4));
    SequenceChunk c{&seq, 0, {3, 4, 5, 6}, {3}};
    ForwardBatch b = build_forward_batch({c}, page_size, AttentionMode::Expanded);
    b.positions[2] = 1 << 20;  // beyond the context
    try {
      dp->group(1).forward(b, dp->cache(1));
    } catch (const Error& e) {
      error = e.what();
    }
    dp->group(1).set_has_work(false);
  });
  good.join();
  bad.join();
  EXPECT_NE(error.find("outside the context"), std::string::npos) << error;
  EXPECT_EQ(got, want) << "the other group kept running";
}

// ---------------------------------------------------------------- engine level

using test::Collected;

GenerationRequest greedy_request(const std::string& rid, std::vector<int32_t> ids, int max_new) {
  GenerationRequest r;
  r.rid = rid;
  r.input_ids = std::move(ids);
  r.sampling.temperature = 0;
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  return r;
}

std::vector<Collected> run_all(Engine& engine, const std::vector<GenerationRequest>& reqs) {
  return test::run_to_completion(engine, reqs);
}

constexpr int kPageSize = 4;
constexpr int64_t kPages = 128;

SchedulerOptions engine_options() {
  SchedulerOptions opt;
  opt.chunked_prefill_size = 8;  // prompts longer than 8 tokens prefill in chunks
  opt.max_prefill_tokens = 16;
  return opt;
}

// One scheduler per group behind a DataParallelEngine.
struct DpEngine {
  ModelConfig cfg;
  std::unique_ptr<CheckpointWeights> src;
  std::unique_ptr<DataParallelModel> dp;
  std::vector<std::unique_ptr<PagePool>> pools;
  std::unique_ptr<DataParallelEngine> engine;

  DpEngine(const std::string& dir, const Split& s) : cfg(ModelConfig::load(dir)) {
    src = std::make_unique<CheckpointWeights>(dir, cfg);
    dp = load_dp(dir, s, *src);
    std::vector<std::unique_ptr<Engine>> groups;
    for (int g = 0; g < s.dp; ++g) pools.push_back(std::make_unique<PagePool>(kPages, kPageSize));
    dp->allocate_caches(cache_pages_for(*pools[0]), kPageSize);
    for (int g = 0; g < s.dp; ++g) groups.push_back(create_engine(dp->group(g), dp->cache(g), *pools[size_t(g)], engine_options()));
    engine = std::make_unique<DataParallelEngine>(std::move(groups));
  }
  ~DpEngine() { engine->shutdown(); }
};

// Phase 1: eight requests of different lengths at once (two sharing a 24-token prefix); phase 2:
// four requests continuing phase-1 prompts of their group (prefix-cache hits).
std::vector<GenerationRequest> phase1(int vocab) {
  const std::vector<int> lens = {3, 40, 30, 25, 17, 5, 33, 12}, news = {6, 3, 12, 5, 8, 16, 4, 10};
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 8; ++i)
    reqs.push_back(greedy_request("r" + std::to_string(i), random_ids(lens[size_t(i)], 7 + i, vocab), news[size_t(i)]));
  auto shared = random_ids(24, 99, vocab);
  std::copy(shared.begin(), shared.end(), reqs[2].input_ids.begin());
  std::copy(shared.begin(), shared.end(), reqs[6].input_ids.begin());
  return reqs;
}

std::vector<GenerationRequest> phase2(const std::vector<GenerationRequest>& first,
                                     const std::vector<std::vector<int32_t>>& outputs, int vocab) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) {  // request 8 + i goes where request i went (round-robin over 2 or 4 groups)
    std::vector<int32_t> ids = first[size_t(i)].input_ids;  // its prompt and output are in that group's cache
    ids.insert(ids.end(), outputs[size_t(i)].begin(), outputs[size_t(i)].end());
    auto more = random_ids(6, 50 + i, vocab);
    ids.insert(ids.end(), more.begin(), more.end());
    reqs.push_back(greedy_request("r" + std::to_string(8 + i), ids, 5 + i));
  }
  return reqs;
}

// The stats once every group has published its last step (they lag the final events by a moment).
EngineStats settled_stats(Engine& engine) {
  EngineStats st = engine.stats();
  for (int i = 0; i < 500 && (st.running_requests > 0 || st.queued_requests > 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    st = engine.stats();
  }
  return st;
}

// The same requests through one scheduler on one device.
std::vector<std::vector<int32_t>> one_device_outputs(const std::string& dir, const std::vector<GenerationRequest>& reqs) {
  TestModel one = load_checkpoint_model(dir, kPageSize, kPages * kPageSize);
  PagePool pool(kPages, kPageSize);
  LatentCache cache = one.model->make_cache(cache_pages_for(pool), kPageSize, false, std::nullopt);
  auto engine = create_engine(*one.model, cache, pool, engine_options());
  std::vector<std::vector<int32_t>> out;
  for (auto& c : run_all(*engine, reqs)) out.push_back(c.ids);
  engine->shutdown();
  return out;
}

class DataParallelEngineTest : public ::testing::TestWithParam<Split> {};
// The same through the fixture checkpoints (and the random one).
class DataParallelEngineModelsTest : public ::testing::TestWithParam<std::tuple<std::string, Split>> {};

TEST_P(DataParallelEngineModelsTest, ConcurrentRequestsMatchOneDevice) {
  const auto& [name, s] = GetParam();
  if (name != "random") DS_REQUIRE_FIXTURES();
  const std::string dir = model_dir(name);
  DpEngine h(dir, s);
  const int vocab = h.cfg.vocab_size;
  auto first = phase1(vocab);
  const auto reference1 = one_device_outputs(dir, first);
  auto got1 = run_all(*h.engine, first);
  std::vector<std::vector<int32_t>> out1;
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(got1[i].ids, reference1[i]) << split_name(s) << " request " << first[i].rid;
    EXPECT_EQ(got1[i].finish.type, "length") << first[i].rid;
    out1.push_back(got1[i].ids);
  }
  auto second = phase2(first, out1, vocab);
  const auto reference2 = one_device_outputs(dir, second);
  auto got2 = run_all(*h.engine, second);
  for (size_t i = 0; i < second.size(); ++i) {
    EXPECT_EQ(got2[i].ids, reference2[i]) << split_name(s) << " request " << second[i].rid;
    // Its group cached the earlier request's prompt and output, less the last token, in whole pages.
    const int64_t reusable = int64_t(first[i].input_ids.size() + out1[i].size()) - 1;
    EXPECT_EQ(got2[i].cached_tokens, reusable / kPageSize * kPageSize)
        << split_name(s) << " request " << second[i].rid << " reuses its group's prefix";
  }
  int64_t prompt_tokens = 0;
  for (auto* reqs : {&first, &second})
    for (auto& r : *reqs) prompt_tokens += int64_t(r.input_ids.size());
  EngineStats st = settled_stats(*h.engine);
  EXPECT_EQ(st.kv_pages_total, s.dp * kPages);
  EXPECT_EQ(st.prompt_tokens_total, prompt_tokens);
  EXPECT_GT(st.cached_tokens_total, 0);
  EXPECT_EQ(st.running_requests, 0);
  EXPECT_EQ(st.queued_requests, 0);
  EXPECT_GT(st.kv_pages_used, 0) << "finished requests' pages stay in the prefix caches";
  h.engine->flush_cache();
  for (int i = 0; i < 500 && h.engine->stats().kv_pages_used > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(h.engine->stats().kv_pages_used, 0) << "flush_cache reached every group";
}

TEST_P(DataParallelEngineModelsTest, OneRequestAloneMatchesOneDevice) {
  const auto& [name, s] = GetParam();
  if (name != "random") DS_REQUIRE_FIXTURES();
  const std::string dir = model_dir(name);
  DpEngine h(dir, s);
  std::vector<GenerationRequest> one = {greedy_request("solo", random_ids(21, 5, h.cfg.vocab_size), 14)};
  const auto reference = one_device_outputs(dir, one);
  auto got = run_all(*h.engine, one);
  EXPECT_EQ(got[0].ids, reference[0]) << split_name(s);
  EXPECT_EQ(h.dp->rounds(), 3 + 13) << "3 prefill chunks of 8, 8 and 5 tokens and 13 decode steps, each one round";
}

TEST_P(DataParallelEngineTest, DispatchIsRoundRobinAndAbortReachesTheRightGroup) {
  const Split s = GetParam();
  DpEngine h(random_checkpoint(), s);
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, FinishReason> finished;
  std::map<std::string, int> tokens;
  const int n = 2 * s.dp;
  for (int i = 0; i < n; ++i) {
    const std::string rid = "long" + std::to_string(i);
    h.engine->submit(greedy_request(rid, random_ids(6 + i, 300 + i, h.cfg.vocab_size), 400), [&, rid](RequestOutput ev) {
      std::lock_guard lk(mu);
      tokens[rid] += int(ev.new_token_ids.size());
      if (ev.finished) finished[rid] = *ev.finish_reason;
      cv.notify_all();
    });
    EXPECT_EQ(h.engine->group_of(rid), i % s.dp) << rid;
  }
  {  // every request is generating
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return int(tokens.size()) == n; });
  }
  h.engine->abort("no-such-request");  // ignored
  h.engine->abort("long1");
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return finished.count("long1") > 0; });
    EXPECT_EQ(finished["long1"].type, "abort");
    EXPECT_EQ(finished.size(), 1u) << "only the aborted request ended";
  }
  EXPECT_EQ(h.engine->group_of("long1"), -1);
  EngineStats st = h.engine->stats();
  EXPECT_EQ(st.kv_pages_total, s.dp * kPages);
  EXPECT_GT(st.kv_pages_used, 0);
  for (int i = 0; i < n; ++i) h.engine->abort("long" + std::to_string(i));
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return int(finished.size()) == n; });
  }
  for (auto& [rid, why] : finished) EXPECT_EQ(why.type, "abort") << rid;
  // A rid reused while in flight goes to its group, which refuses the duplicate at once.
  std::vector<GenerationRequest> dup = {greedy_request("twice", {5, 6, 7}, 300), greedy_request("twice", {5, 6, 8}, 3)};
  h.engine->submit(dup[0], [](RequestOutput) {});
  try {
    h.engine->submit(dup[1], [](RequestOutput) {});
    ADD_FAILURE() << "the duplicate rid was accepted";
  } catch (const EngineError& e) {
    EXPECT_EQ(e.kind, EngineErrorKind::DuplicateRequestId) << e.what();
  }
  EXPECT_EQ(h.engine->group_of("twice"), int((n) % s.dp)) << "the original keeps its entry";
  h.engine->abort("twice");
}

INSTANTIATE_TEST_SUITE_P(Splits, DataParallelEngineTest, ::testing::ValuesIn(kSplits),
                         [](const auto& info) { return split_name(info.param); });
INSTANTIATE_TEST_SUITE_P(Models, DataParallelEngineModelsTest,
                         ::testing::Combine(::testing::Values("random", "tiny-v3-bf16", "tiny-v3-fp8"),
                                            ::testing::ValuesIn(kSplits)),
                         [](const auto& info) {
                           std::string m = std::get<0>(info.param);
                           m = m == "random" ? "random" : m == "tiny-v3-bf16" ? "bf16" : "fp8";
                           return m + "_" + split_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace dsserve::test
