// The scheduler engine on a small random model (CPU backend): batching, chunked prefill, page
// sizes, prefix reuse, retraction under a tight KV budget, aborts, stop conditions, seeds, and
// the errors of requests that can never run. Greedy outputs must not depend on how requests are
// scheduled.
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <random>

#include "backend/backend.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "model/weight_source.h"
#include "common/engine_runs.h"
#include "common/scheduler_harness.h"
#include "runtime/scheduler.h"

namespace dsserve {
namespace {

using Harness = test::SchedulerHarness;
using test::greedy_request;
using test::random_ids;
using test::Collected;

std::vector<Collected> run_all(Engine& engine, const std::vector<GenerationRequest>& reqs) {
  return test::run_to_completion(engine, reqs);
}

std::vector<GenerationRequest> mixed_requests() {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy_request("r" + std::to_string(i), random_ids(5 + 13 * i, i), 12));
  return reqs;
}

// Reference: each request alone, whole-prompt prefill, page size 1, no prefix cache.
std::vector<std::vector<int32_t>> alone_outputs() {
  SchedulerOptions opt;
  opt.disable_radix_cache = true;
  Harness h(1, 512, opt);
  std::vector<std::vector<int32_t>> out;
  for (auto& r : mixed_requests()) out.push_back(run_all(*h.engine, {r})[0].ids);
  return out;
}

TEST(Scheduler, GreedyOutputsDoNotDependOnBatchingChunkingOrPageSize) {
  const auto reference = alone_outputs();
  for (int page_size : {1, 16}) {
    for (int chunk : {0, 16}) {
      SchedulerOptions opt;
      opt.chunked_prefill_size = chunk;
      Harness h(page_size, 2048, opt);
      auto got = run_all(*h.engine, mixed_requests());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].ids, reference[i]) << "request " << i << ", page size " << page_size << ", chunk " << chunk;
        EXPECT_EQ(got[i].finish.type, "length");
      }
    }
  }
}

TEST(Scheduler, SharedPrefixIsReusedAndReportedAsCached) {
  for (int page_size : {1, 16}) {
    Harness h(page_size, 2048);
    auto prefix = random_ids(70, 42);
    auto a = prefix, b = prefix;
    a.push_back(7), a.push_back(8);
    b.push_back(9);
    auto first = run_all(*h.engine, {greedy_request("a", a, 6)});
    auto second = run_all(*h.engine, {greedy_request("b", b, 6)});
    EXPECT_EQ(first[0].cached_tokens, 0);
    EXPECT_EQ(second[0].cached_tokens, 70 / page_size * page_size) << "page size " << page_size;
    SchedulerOptions no_cache;
    no_cache.disable_radix_cache = true;
    Harness fresh(page_size, 2048, no_cache);
    EXPECT_EQ(second[0].ids, run_all(*fresh.engine, {greedy_request("b", b, 6)})[0].ids)
        << "cached and uncached runs agree";
    EXPECT_EQ(h.engine->stats().cached_tokens_total, second[0].cached_tokens);
  }
}

TEST(Scheduler, ParallelSamplesOfOnePromptShareItsPages) {
  // n = 4 samples of one prompt arrive together: one computes the prompt, the others reuse its pages.
  Harness h(16, 2048);
  auto prompt = random_ids(70, 11);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(greedy_request("n" + std::to_string(i), prompt, 5));
  auto got = run_all(*h.engine, reqs);
  int computed = 0;
  for (auto& c : got) {
    EXPECT_EQ(c.ids, got[0].ids);
    if (c.cached_tokens == 0) ++computed;
    else EXPECT_EQ(c.cached_tokens, 64);
  }
  EXPECT_EQ(computed, 1) << "exactly one request computes the shared prompt";
}

TEST(Scheduler, TightKvBudgetRetractsAndResumesWithTheSameOutputs) {
  const auto reference = alone_outputs();
  SchedulerOptions opt;
  opt.disable_radix_cache = true;
  // 6 requests of up to 82 + 12 tokens: 140 tokens of cache cannot hold them all at once.
  Harness h(4, 140, opt);
  auto got = run_all(*h.engine, mixed_requests());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].ids, reference[i]) << "request " << i;
  EXPECT_GT(h.engine->stats().retractions_total, 0) << "the budget was meant to force retraction";
  EXPECT_EQ(h.pool->num_free(), h.pool->num_pages()) << "every page comes back";
}

TEST(Scheduler, AbortFreesPagesAndEndsTheStream) {
  SchedulerOptions opt;
  opt.disable_radix_cache = true;
  Harness h(1, 2048, opt);
  std::promise<RequestOutput> last;
  std::atomic<int> events{0};
  auto req = greedy_request("long", random_ids(30, 1), 2000 - 30);
  h.engine->submit(req, [&](RequestOutput ev) {
    if (++events == 3) h.engine->abort("long");
    if (ev.finished) last.set_value(ev);
  });
  RequestOutput ev = last.get_future().get();
  EXPECT_EQ(ev.finish_reason->type, "abort");
  EXPECT_LT(ev.completion_tokens, 100);
  for (int i = 0; i < 100 && h.pool->num_free() != h.pool->num_pages(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(h.pool->num_free(), h.pool->num_pages());
}

TEST(Scheduler, StopTokensMinNewTokensAndSeeds) {
  Harness h(1, 2048);
  auto base = greedy_request("x", random_ids(10, 5), 10);
  auto free_run = run_all(*h.engine, {base})[0].ids;
  ASSERT_EQ(free_run.size(), 10u);
  auto stop = base;
  stop.rid = "stop";
  stop.sampling.stop_token_ids = {free_run[3]};
  auto stopped = run_all(*h.engine, {stop})[0];
  EXPECT_EQ(stopped.finish.type, "stop");
  EXPECT_EQ(stopped.finish.matched_token, free_run[3]);
  EXPECT_EQ(stopped.ids.back(), free_run[3]);
  EXPECT_LE(stopped.ids.size(), 4u);
  auto delayed = stop;
  delayed.rid = "min";
  delayed.sampling.min_new_tokens = 10;
  auto d = run_all(*h.engine, {delayed})[0];
  EXPECT_EQ(d.ids.size(), 10u) << "stop tokens are suppressed until min_new_tokens";

  auto sampled = base;
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.seed = 1234;
  sampled.rid = "s1";
  auto s1 = run_all(*h.engine, {sampled})[0].ids;
  sampled.rid = "s2";
  auto s2 = run_all(*h.engine, {sampled})[0].ids;
  EXPECT_EQ(s1, s2) << "same seed, same output";
  sampled.rid = "s3";
  sampled.sampling.seed = 99;
  EXPECT_NE(s1, run_all(*h.engine, {sampled})[0].ids) << "another seed, another output (10 tokens of 512)";
}

TEST(Scheduler, LogprobsAreReportedForPromptAndOutput) {
  Harness h(1, 2048);
  auto r = greedy_request("lp", random_ids(8, 9), 4);
  r.return_logprob = true;
  r.logprob_start_len = 0;
  r.top_logprobs_num = 3;
  auto c = run_all(*h.engine, {r})[0];
  std::vector<TokenLogprob> in, out;
  for (auto& ev : c.events) {
    in.insert(in.end(), ev.input_token_logprobs.begin(), ev.input_token_logprobs.end());
    out.insert(out.end(), ev.output_token_logprobs.begin(), ev.output_token_logprobs.end());
  }
  ASSERT_EQ(in.size(), 8u);
  EXPECT_FALSE(in[0].first.has_value());
  for (size_t t = 1; t < 8; ++t) {
    ASSERT_TRUE(in[t].first.has_value());
    EXPECT_LE(*in[t].first, 0.0f);
    EXPECT_EQ(in[t].second, r.input_ids[t]);
  }
  ASSERT_EQ(out.size(), 4u);
  auto& top = c.events[0].output_top_logprobs[0];
  ASSERT_TRUE(top.has_value());
  ASSERT_EQ(top->size(), 3u);
  EXPECT_EQ((*top)[0].second, out[0].second) << "greedy picks the top-1";
  EXPECT_FLOAT_EQ((*top)[0].first, *out[0].first);
}

TEST(Scheduler, RequestsThatCanNeverRunAreRejectedWithTheReason) {
  SchedulerOptions opt;
  opt.max_queued_requests = 1000;
  Harness h(1, 256, opt);
  auto expect_error = [&](GenerationRequest r, const std::string& words) {
    try {
      h.engine->submit(r, [](RequestOutput) {});
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_error(greedy_request("e1", {}, 4), "empty");
  expect_error(greedy_request("e2", {5, 600}, 4), "outside the vocabulary");
  expect_error(greedy_request("e3", random_ids(100, 1), 2000), "context length");
  expect_error(greedy_request("e4", random_ids(100, 1), 200), "KV pages");
  auto bad = greedy_request("e5", {5, 6}, 4);
  bad.sampling.top_p = 0;
  expect_error(bad, "top_p");
}

}  // namespace
}  // namespace dsserve
