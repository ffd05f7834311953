// What the engine refuses and in which order it admits work: typed errors (EngineErrorKind, never
// matched by message text) for invalid requests naming the field, duplicate and batch-shared
// request ids, groups larger than the queue, a full queue; groups queued all or none; a full
// queue still taking a client below its fair share; requests the scheduler has taken counting
// against the limit until it reports its queue; waiting requests admitted round-robin over
// clients; and decode through the non-absorbed attention (--disable-mla) giving the absorbed
// path's tokens.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "common/engine_runs.h"
#include "common/scheduler_harness.h"
#include "common/tiny_model_config.h"
#include "runtime/engine_error.h"
#include "runtime/request_inbox.h"

namespace dsserve {
namespace {

using test::greedy_request;
using test::random_ids;
using Harness = test::SchedulerHarness;

// The kind of EngineError submit throws (fails the test when it accepts).
EngineErrorKind refusal(Engine& e, std::vector<GenerationRequest> reqs, std::string* field = nullptr) {
  std::vector<Submission> subs;
  for (auto& r : reqs) subs.push_back({std::move(r), [](RequestOutput) {}});
  try {
    e.submit_all(std::move(subs));
  } catch (const EngineError& err) {
    if (field) *field = err.field;
    return err.kind;
  }
  ADD_FAILURE() << "accepted";
  return EngineErrorKind::InvalidRequest;
}

GenerationRequest from(const std::string& client, GenerationRequest r) {
  r.client = client;
  return r;
}

TEST(EngineLimits, InvalidRequestsAreTypedAndNameTheField) {
  Harness h(1, 512);
  std::string field;
  GenerationRequest r = greedy_request("a", {5, 6}, 4);
  r.sampling.top_p = 1.5f;
  EXPECT_EQ(refusal(*h.engine, {r}, &field), EngineErrorKind::InvalidRequest);
  EXPECT_EQ(field, "top_p");
  r = greedy_request("b", {5, 6}, 4);
  r.sampling.logit_bias = {{700, 1.0f}};  // outside the vocabulary of 512
  EXPECT_EQ(refusal(*h.engine, {r}, &field), EngineErrorKind::InvalidRequest);
  EXPECT_EQ(field, "logit_bias");
  EXPECT_EQ(refusal(*h.engine, {greedy_request("c", {}, 4)}, &field), EngineErrorKind::InvalidRequest);
  EXPECT_EQ(field, "input_ids");
}

TEST(EngineLimits, SamplingParamsValidateIsTheOneRule) {
  SamplingParams p;
  EXPECT_NO_THROW(p.validate(512));
  auto field_of = [](SamplingParams q, const std::string& prefix = "") -> std::string {
    try {
      q.validate(512, prefix);
    } catch (const EngineError& e) {
      EXPECT_EQ(e.kind, EngineErrorKind::InvalidRequest);
      EXPECT_NE(std::string(e.what()).find("'" + e.field + "'"), std::string::npos) << e.what();
      return e.field;
    }
    return "<accepted>";
  };
  SamplingParams q;
  q.temperature = -1;
  EXPECT_EQ(field_of(q), "temperature");
  q = {};
  q.temperature = std::numeric_limits<float>::infinity();
  EXPECT_EQ(field_of(q), "temperature");
  q = {};
  q.top_p = 0;
  EXPECT_EQ(field_of(q, "sampling_params."), "sampling_params.top_p");
  q = {};
  q.top_k = -2;
  EXPECT_EQ(field_of(q), "top_k");
  q = {};
  q.min_p = 1.5f;
  EXPECT_EQ(field_of(q), "min_p");
  q = {};
  q.presence_penalty = 2.5f;
  EXPECT_EQ(field_of(q), "presence_penalty");
  q = {};
  q.repetition_penalty = 0;
  EXPECT_EQ(field_of(q), "repetition_penalty");
  q = {};
  q.max_new_tokens = -1;
  EXPECT_EQ(field_of(q), "max_new_tokens");
  q = {};
  q.stop_token_ids = {512};
  EXPECT_EQ(field_of(q), "stop_token_ids");
}

TEST(EngineLimits, DuplicateAndBatchSharedRequestIdsAreRefused) {
  SchedulerOptions opt;
  opt.max_running_requests = 1;
  Harness h(1, 1024, opt);
  std::mutex mu;
  std::condition_variable cv;
  bool first_done = false;
  h.engine->submit(greedy_request("x", random_ids(8, 1), 40), [&](RequestOutput ev) {
    if (!ev.finished) return;
    std::lock_guard lk(mu);
    first_done = true;
    cv.notify_all();
  });
  EXPECT_EQ(refusal(*h.engine, {greedy_request("x", {5}, 2)}), EngineErrorKind::DuplicateRequestId);
  EXPECT_EQ(refusal(*h.engine, {greedy_request("y", {5}, 2), greedy_request("y", {6}, 2)}),
            EngineErrorKind::DuplicateRequestId);
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return first_done; });
  }
  // Finished: the id is free again.
  auto out = test::run_to_completion(*h.engine, {greedy_request("x", {5, 6}, 2)});
  EXPECT_EQ(out[0].finish.type, "length");
}

TEST(EngineLimits, GroupsBeyondTheQueueAndFullQueues) {
  SchedulerOptions opt;
  opt.max_running_requests = 1;
  opt.max_queued_requests = 4;
  Harness h(1, 4096, opt);
  std::vector<GenerationRequest> five;
  for (int i = 0; i < 5; ++i) five.push_back(greedy_request("big" + std::to_string(i), {5, 6}, 2));
  EXPECT_EQ(refusal(*h.engine, five), EngineErrorKind::TooManySequences);

  // Client A fills the queue with long requests (one runs at a time).
  std::vector<Submission> a;
  for (int i = 0; i < 4; ++i) a.push_back({from("A", greedy_request("a" + std::to_string(i), random_ids(6, i), 60)), [](RequestOutput) {}});
  h.engine->submit_all(std::move(a));
  std::vector<GenerationRequest> more_a;
  for (int i = 0; i < 3; ++i) more_a.push_back(from("A", greedy_request("a+" + std::to_string(i), {5}, 2)));
  EXPECT_EQ(refusal(*h.engine, more_a), EngineErrorKind::QueueFull);
  // All or none: the refused group left nothing behind (its ids are free).
  auto ok = test::run_to_completion(*h.engine, {from("C", greedy_request("a+0", {5}, 1))});
  EXPECT_EQ(ok[0].finish.type, "length");
  // B holds nothing: below its fair share, it still gets in.
  auto b = test::run_to_completion(*h.engine, {from("B", greedy_request("b0", {5, 6}, 1))});
  EXPECT_EQ(b[0].finish.type, "length");
}

TEST(EngineLimits, FullQueueRefusesOnlyClientsAtTheirShare) {
  SchedulerOptions opt;
  opt.max_running_requests = 1;
  opt.max_queued_requests = 4;
  Harness h(1, 4096, opt);
  std::vector<Submission> a;
  for (int i = 0; i < 4; ++i) a.push_back({from("A", greedy_request("a" + std::to_string(i), random_ids(6, i), 80)), [](RequestOutput) {}});
  h.engine->submit_all(std::move(a));
  // A tops the queue up (one of its requests may be running already) until it is refused.
  bool refused = false;
  for (int i = 4; i < 7 && !refused; ++i) {
    try {
      h.engine->submit(from("A", greedy_request("a" + std::to_string(i), random_ids(6, i), 80)), [](RequestOutput) {});
    } catch (const EngineError& e) {
      EXPECT_EQ(e.kind, EngineErrorKind::QueueFull) << e.what();
      refused = true;
    }
  }
  EXPECT_TRUE(refused) << "A was never refused";
  std::vector<Submission> b;
  b.push_back({from("B", greedy_request("b0", {5, 6}, 2)), [](RequestOutput) {}});
  EXPECT_NO_THROW(h.engine->submit_all(std::move(b)));  // share 4 / 2 clients = 2
  EXPECT_EQ(refusal(*h.engine, {from("B", greedy_request("b1", {5}, 2)), from("B", greedy_request("b2", {5}, 2))}),
            EngineErrorKind::QueueFull);
}

// The inbox on its own, without a scheduler thread: requests the scheduler has taken but not yet
// reported back (set_waiting) still count against the queue's limit.
TEST(EngineLimits, TakenRequestsCountAsWaitingUntilTheSchedulerReports) {
  const ModelConfig cfg = ModelConfig::parse(test::tiny_model_config().dump(), "test config");
  RequestLimits lim;
  lim.config = &cfg;
  lim.context_len = 256;
  lim.num_pages = 64;
  lim.max_queued_requests = 4;
  RequestInbox inbox(lim);
  auto group = [](const std::string& prefix, int n) {
    std::vector<Submission> g;
    for (int i = 0; i < n; ++i) g.push_back({from("A", greedy_request(prefix + std::to_string(i), {5, 6}, 2)), nullptr});
    return g;
  };
  inbox.submit(group("a", 4));
  std::optional<RequestInbox::Taken> t = inbox.take(false, [] {});
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->incoming.size(), 4u);
  try {  // taken, not yet reported: the queue is still full for A
    inbox.submit(group("b", 1));
    ADD_FAILURE() << "a fifth request of A was queued while the four taken ones counted nowhere";
  } catch (const EngineError& e) {
    EXPECT_EQ(e.kind, EngineErrorKind::QueueFull) << e.what();
  }
  // The scheduler reports that one of them is running and three wait: one more fits.
  std::deque<RequestPtr> waiting(t->incoming.begin() + 1, t->incoming.end());
  inbox.set_waiting(waiting);
  EXPECT_NO_THROW(inbox.submit(group("c", 1)));
}

TEST(EngineLimits, WaitingRequestsAreAdmittedRoundRobinOverClients) {
  SchedulerOptions opt;
  opt.max_running_requests = 1;
  opt.disable_radix_cache = true;
  Harness h(1, 4096, opt);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> started;  // rids in the order of their first token
  size_t finished = 0;
  auto cb = [&](const std::string& rid) {
    return [&, rid](RequestOutput ev) {
      std::lock_guard lk(mu);
      if (!ev.new_token_ids.empty() && std::find(started.begin(), started.end(), rid) == started.end())
        started.push_back(rid);
      if (ev.finished) ++finished, cv.notify_all();
    };
  };
  std::vector<Submission> a;
  for (int i = 0; i < 5; ++i)
    a.push_back({from("A", greedy_request("a" + std::to_string(i), random_ids(6, i), 20)), cb("a" + std::to_string(i))});
  h.engine->submit_all(std::move(a));
  h.engine->submit(from("B", greedy_request("b0", random_ids(6, 9), 20)), cb("b0"));
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return finished == 6; });
  auto at = [&](const std::string& rid) { return std::find(started.begin(), started.end(), rid) - started.begin(); };
  EXPECT_LT(at("b0"), at("a3")) << "b0 waited behind all of A's requests";
  EXPECT_LT(at("a0"), at("a1"));
  EXPECT_LT(at("a1"), at("a2")) << "one client's requests keep their order";
}

TEST(EngineLimits, DecodeWithoutMlaGivesTheAbsorbedTokens) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(greedy_request("r" + std::to_string(i), random_ids(5 + 11 * i, i), 16));
  SchedulerOptions absorbed_opt, expanded_opt;
  expanded_opt.decode_attention = AttentionMode::Expanded;
  std::vector<std::vector<int32_t>> absorbed, expanded;
  {
    Harness h(4, 1024, absorbed_opt);
    absorbed = test::tokens_to_completion(*h.engine, reqs);
  }
  {
    Harness h(4, 1024, expanded_opt);
    expanded = test::tokens_to_completion(*h.engine, reqs);
  }
  EXPECT_EQ(absorbed, expanded);
  for (auto& ids : expanded) EXPECT_EQ(ids.size(), 16u);
}

}  // namespace
}  // namespace dsserve
