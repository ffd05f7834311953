// The routes against a scripted engine and the real DeepSeek-V3 tokenizer: response shapes of
// /generate, chat and completions (plain and streaming), stop strings (trimmed, engine request
// aborted, finish reason stop), queue full -> 503 with Retry-After, client disconnect -> abort.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "common/test_paths.h"
#include "fake_server_util.h"
#include "server/api_error.h"
#include "server/routes.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

using namespace dsserve;
using namespace dsserve::server;
using nlohmann::json;

namespace {

class RoutesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string dir = test::npm_tokenizer_dir();
    if (dir.empty()) return;
    tokenizer_ = new text::Tokenizer(text::Tokenizer::load(dir));
    template_ = new text::ChatTemplate(text::ChatTemplate::from_tokenizer(*tokenizer_));
  }
  void SetUp() override {
    if (!tokenizer_) GTEST_SKIP() << "DeepSeek-V3 tokenizer absent: run scripts/setup.sh";
    ServerSettings s;
    s.served_model_name = "m";
    s.reasoning_parser = "deepseek-r1";
    s.tool_call_parser = "deepseekv3";
    ctx_ = std::make_unique<ServerContext>(engine_, tokenizer_, template_, s);
    add_all_routes(router_, *ctx_);
  }
  // Dispatches and runs the engine events; returns the responder.
  std::shared_ptr<test::FakeResponder> call(const std::string& method, const std::string& path, const json& body) {
    auto r = std::make_shared<test::FakeResponder>();
    Request req{method, path, "", body.is_null() ? "" : body.dump(), {}};
    router_.dispatch(req, r);
    r->drain();
    return r;
  }
  static json sse_events(const test::FakeResponder& r) {
    json out = json::array();
    for (auto& c : r.chunks) {
      EXPECT_EQ(c.rfind("data: ", 0), 0u);
      std::string d = c.substr(6, c.size() - 8);
      out.push_back(d == "[DONE]" ? json("[DONE]") : json::parse(d));
    }
    return out;
  }
  std::vector<int32_t> ids(const std::string& s) { return tokenizer_->encode(s); }

  static text::Tokenizer* tokenizer_;
  static text::ChatTemplate* template_;
  test::FakeEngine engine_;
  Router router_;
  std::unique_ptr<ServerContext> ctx_;
};
text::Tokenizer* RoutesTest::tokenizer_ = nullptr;
text::ChatTemplate* RoutesTest::template_ = nullptr;

TEST_F(RoutesTest, GenerateSingleAndBatch) {
  engine_.script = ids("Hello world");
  auto r = call("POST", "/generate", {{"text", "Hi"}, {"sampling_params", {{"max_new_tokens", 8}}}});
  ASSERT_TRUE(r->sent);
  json j = json::parse(r->response.body);
  EXPECT_EQ(j["text"], "Hello world");
  EXPECT_EQ(j["meta_info"]["finish_reason"]["type"], "length");
  EXPECT_EQ(j["meta_info"]["completion_tokens"], engine_.script.size());
  EXPECT_EQ(j["meta_info"]["cached_tokens"], 1);
  EXPECT_EQ(engine_.submitted[0].input_ids[0], tokenizer_->bos_id);  // text gets BOS, as SGLang
  r = call("POST", "/generate", {{"input_ids", {{0, 5}, {0, 6}}}, {"return_logprob", true}});
  j = json::parse(r->response.body);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["meta_info"]["output_token_logprobs"][0][0], -0.5);
  EXPECT_NE(engine_.submitted[1].rid, engine_.submitted[2].rid);
}

TEST_F(RoutesTest, StopStringIsTrimmedAndAbortsTheEngineRequest) {
  engine_.script = ids("one two STOP three four");
  auto r = call("POST", "/generate", {{"text", "x"}, {"sampling_params", {{"stop", "STOP"}, {"max_new_tokens", 20}}}});
  json j = json::parse(r->response.body);
  EXPECT_EQ(j["text"], "one two ");
  EXPECT_EQ(j["meta_info"]["finish_reason"], json({{"type", "stop"}, {"matched", "STOP"}}));
  ASSERT_EQ(engine_.aborted.size(), 1u);
  EXPECT_EQ(engine_.aborted[0], engine_.submitted.back().rid);
  r = call("POST", "/v1/completions", {{"prompt", "x"}, {"stop", {"STOP"}}, {"max_tokens", 20}, {"no_stop_trim", true}});
  j = json::parse(r->response.body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][0]["matched_stop"], "STOP");
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>().rfind("one two STOP", 0), 0u);
}

TEST_F(RoutesTest, ChatSeparatesReasoningAndParsesToolCalls) {
  engine_.script = ids("Let me think.</think>The answer is 4.");
  auto r = call("POST", "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "2+2?"}}}}, {"max_tokens", 50}});
  json j = json::parse(r->response.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "Let me think.");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "The answer is 4.");
  EXPECT_EQ(j["usage"]["completion_tokens"], engine_.script.size());
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 1);

  engine_.script = ids("</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
  json tools = {{{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", json::object()}}}}};
  engine_.script.push_back(1);  // eos
  r = call("POST", "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "weather?"}}}}, {"tools", tools}, {"max_tokens", 100}});
  j = json::parse(r->response.body);
  auto& calls = j["choices"][0]["message"]["tool_calls"];
  ASSERT_EQ(calls.size(), 1u) << j.dump();
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(calls[0]["function"]["arguments"].get<std::string>())["city"], "Paris");
}

TEST_F(RoutesTest, StreamingChatChunks) {
  engine_.script = ids("</think>Hi there");
  auto r = call("POST", "/v1/chat/completions",
                {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"stream", true}, {"n", 2},
                 {"stream_options", {{"include_usage", true}}}, {"logprobs", true}});
  ASSERT_TRUE(r->streaming);
  ASSERT_TRUE(r->ended);
  json ev = sse_events(*r);
  EXPECT_EQ(ev.back(), "[DONE]");
  json usage = ev[ev.size() - 2];
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2 * engine_.script.size());
  std::string content[2];
  int finishes = 0;
  for (auto& e : ev) {
    if (!e.is_object() || e["choices"].empty()) continue;
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    auto& c = e["choices"][0];
    int i = c["index"];
    if (c["delta"].contains("content")) content[i] += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) ++finishes;
  }
  EXPECT_EQ(content[0], "Hi there");
  EXPECT_EQ(content[1], "Hi there");
  EXPECT_EQ(finishes, 2);
  ASSERT_EQ(engine_.submitted.size(), 2u);
  EXPECT_NE(engine_.submitted[0].rid, engine_.submitted[1].rid);
}

TEST_F(RoutesTest, EngineRefusalsMapByKindNotByText) {
  engine_.submit_error = "the queue has no room";  // the words do not matter: the kind does
  try {
    call("POST", "/generate", {{"text", "x"}});
    FAIL() << "expected 503";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_EQ(e.code.value_or(""), "queue_full");
    EXPECT_GT(e.retry_after_s, 0);
  }
  engine_.submit_error_kind = EngineErrorKind::DuplicateRequestId;
  engine_.submit_error = "request id 'r' is already in use";
  try {
    call("POST", "/generate", {{"text", "x"}, {"rid", "r"}});
    FAIL() << "expected 400";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param.value_or(""), "rid");
  }
}

TEST_F(RoutesTest, RejectedFanOutKeepsNothingAlive) {
  // A request the engine refuses must not leave its state alive (a listener holding the route's
  // state, which holds the jobs) once the route has answered.
  engine_.submit_error = "full";
  std::weak_ptr<test::FakeResponder> gone;
  {
    auto r = std::make_shared<test::FakeResponder>();
    gone = r;
    json body = {{"prompt", {"a", "b", "c"}}, {"n", 4}, {"max_tokens", 2}};
    EXPECT_THROW(router_.dispatch(Request{"POST", "/v1/completions", "", body.dump(), {}}, r), ApiError);
  }
  EXPECT_TRUE(gone.expired()) << "the refused request's jobs still hold the responder";
}

TEST_F(RoutesTest, TooManySequencesIs400BeforeTokenizing) {
  engine_.max_queued = 8;
  try {
    call("POST", "/v1/completions", {{"prompt", {"a", "b", "c"}}, {"n", 3}});
    FAIL() << "expected 400";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code.value_or(""), "too_many_sequences");
    EXPECT_EQ(e.param.value_or(""), "n");
  }
  try {
    call("POST", "/generate", {{"input_ids", json::array({{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}})}});
    FAIL() << "expected 400";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code.value_or(""), "too_many_sequences");
  }
  EXPECT_TRUE(engine_.submitted.empty());
}

TEST_F(RoutesTest, ChatMessagesCarryNoNullToolCallsAndAFingerprint) {
  engine_.script = ids("Plain words");
  json tools = {{{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", json::object()}}}}};
  auto r = call("POST", "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"tools", tools}});
  json j = json::parse(r->response.body);
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << j.dump();
  EXPECT_TRUE(j["system_fingerprint"].is_string());
  r = call("POST", "/v1/completions", {{"prompt", "hi"}});
  EXPECT_TRUE(json::parse(r->response.body)["system_fingerprint"].is_string());
}

TEST_F(RoutesTest, HealthGenerateReportsAStuckEngine) {
  ctx_->settings.health_generate_timeout_s = 0.05;
  engine_.script = {};  // the health request never comes back
  auto r = call("GET", "/health_generate", nullptr);
  EXPECT_FALSE(r->sent);
  ASSERT_EQ(r->fire_timers(), 1u);  // no progress yet, before the deadline: it polls again
  EXPECT_FALSE(r->sent);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  r->fire_timers();
  ASSERT_TRUE(r->sent);
  EXPECT_EQ(r->response.status, 503);
  EXPECT_NE(r->response.body.find("no progress"), std::string::npos) << r->response.body;

  r = call("GET", "/health_generate", nullptr);  // busy elsewhere: progress is the answer
  engine_.progress += 3;
  r->fire_timers();
  ASSERT_TRUE(r->sent);
  EXPECT_EQ(r->response.status, 200);

  engine_.scripted_stats.fatal_error = "GPU 0: unspecified launch failure";
  try {
    call("GET", "/health_generate", nullptr);
    FAIL() << "expected 503";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
  }
}

TEST_F(RoutesTest, ModelById) {
  auto r = call("GET", "/v1/models/m", nullptr);
  EXPECT_EQ(json::parse(r->response.body)["id"], "m");
  try {
    call("GET", "/v1/models/other", nullptr);
    FAIL() << "expected 404";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 404);
    EXPECT_EQ(e.code.value_or(""), "model_not_found");
  }
}

TEST_F(RoutesTest, EchoLogprobOffsetsSkipTheAddedBos) {
  engine_.script = ids(" there");
  auto r = call("POST", "/v1/completions", {{"prompt", "Hello"}, {"echo", true}, {"logprobs", 1}, {"max_tokens", 4}});
  json j = json::parse(r->response.body);
  const json& lp = j["choices"][0]["logprobs"];
  const std::string text = j["choices"][0]["text"];
  ASSERT_EQ(engine_.submitted[0].input_ids[0], tokenizer_->bos_id);
  ASSERT_GE(lp["tokens"].size(), 2u);
  EXPECT_EQ(lp["text_offset"][0], 0) << "BOS takes no room in the echoed text";
  EXPECT_EQ(lp["text_offset"][1], 0) << "the first prompt word starts the text";
  for (size_t i = 1; i < lp["tokens"].size(); ++i) {  // each token's text sits at its offset
    const std::string t = lp["tokens"][i];
    EXPECT_EQ(text.substr(lp["text_offset"][i].get<size_t>(), t.size()), t) << i;
  }
}

TEST_F(RoutesTest, ResponsesApiTextAndStream) {
  engine_.script = ids("</think>Hello there");  // the deepseek-r1 parser is on: nothing before </think>
  engine_.finish_with_stop = true;
  auto r = call("POST", "/v1/responses", {{"input", "hi"}, {"instructions", "be brief"}, {"max_output_tokens", 16}});
  json j = json::parse(r->response.body);
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["status"], "completed");
  ASSERT_EQ(j["output"].size(), 1u) << "no reasoning item for empty reasoning";
  EXPECT_EQ(j["output"][0]["type"], "message");
  EXPECT_EQ(j["output"][0]["content"][0]["type"], "output_text");
  EXPECT_EQ(j["output"][0]["content"][0]["text"], "Hello there");
  EXPECT_EQ(j["usage"]["output_tokens"], engine_.script.size());
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["input_tokens"].get<int>() + int(engine_.script.size()));
  EXPECT_EQ(j["instructions"], "be brief");

  r = call("POST", "/v1/responses", {{"input", {{{"role", "user"}, {"content", {{{"type", "input_text"}, {"text", "hi"}}}}}}},
                                     {"stream", true}});
  ASSERT_TRUE(r->ended);
  std::vector<std::string> types;
  std::string text;
  int64_t seq = -1;
  for (auto& c : r->chunks) {
    ASSERT_EQ(c.rfind("event: ", 0), 0u) << c;
    json e = json::parse(c.substr(c.find("data: ") + 6));
    types.push_back(e["type"]);
    EXPECT_EQ(e["sequence_number"], seq + 1);
    seq = e["sequence_number"];
    if (e["type"] == "response.output_text.delta") text += e["delta"].get<std::string>();
  }
  EXPECT_EQ(types.front(), "response.created");
  EXPECT_EQ(types.back(), "response.completed");
  EXPECT_NE(std::find(types.begin(), types.end(), "response.output_item.added"), types.end());
  EXPECT_NE(std::find(types.begin(), types.end(), "response.output_text.done"), types.end());
  EXPECT_EQ(text, "Hello there");

  r = call("POST", "/v1/responses", {{"input", "hi"}, {"max_output_tokens", 1}});
  j = json::parse(r->response.body);
  EXPECT_EQ(j["status"], "incomplete");
  EXPECT_EQ(j["incomplete_details"]["reason"], "max_output_tokens");

  engine_.script = ids("Let me think.</think>Yes");
  j = json::parse(call("POST", "/v1/responses", {{"input", "hi"}})->response.body);
  ASSERT_EQ(j["output"].size(), 2u);
  EXPECT_EQ(j["output"][0]["type"], "reasoning");
  EXPECT_EQ(j["output"][0]["content"][0]["text"], "Let me think.");
  EXPECT_EQ(j["output"][1]["content"][0]["text"], "Yes");

  EXPECT_THROW(call("POST", "/v1/responses", {{"input", "x"}, {"previous_response_id", "resp_1"}}), ApiError);
  EXPECT_THROW(call("POST", "/v1/responses", {{"input", json::array()}}), ApiError);
  EXPECT_THROW(call("POST", "/v1/responses", {{"input", "x"}, {"tools", {{{"type", "function"}}}}}), ApiError);
}

TEST_F(RoutesTest, NumbersBeyondADoubleAre400) {
  auto r = std::make_shared<test::FakeResponder>();
  try {
    router_.dispatch(Request{"POST", "/v1/completions", "", R"({"prompt": "x", "max_tokens": 1e400})", {}}, r);
    FAIL() << "expected 400";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
  }
}

TEST_F(RoutesTest, ContextLimitsAre400) {
  try {
    call("POST", "/v1/completions", {{"prompt", {1, 2, 3}}, {"max_tokens", 300}});
    FAIL() << "expected 400";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(*e.param, "max_tokens");
  }
}

TEST_F(RoutesTest, DisconnectAbortsEveryChoice) {
  engine_.script = {};  // the engine never answers: the requests stay in flight
  auto r = std::make_shared<test::FakeResponder>();
  json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"stream", true}, {"n", 3}};
  router_.dispatch(Request{"POST", "/v1/chat/completions", "", body.dump(), {}}, r);
  ASSERT_TRUE(r->cancel);
  r->cancel();
  EXPECT_EQ(engine_.aborted.size(), 3u);
  // /metrics counts them as finished and aborted.
  std::string metrics = ctx_->metrics.render(engine_.stats(), "m");
  EXPECT_NE(metrics.find("sglang:num_aborted_requests_total{model_name=\"m\"} 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sglang:num_requests_total{model_name=\"m\"} 3\n"), std::string::npos) << metrics;
}

TEST_F(RoutesTest, ModelsHealthAndInfo) {
  auto r = call("GET", "/v1/models", nullptr);
  EXPECT_EQ(json::parse(r->response.body)["data"][0]["id"], "m");
  r = call("GET", "/health", nullptr);
  EXPECT_EQ(r->response.status, 200);
  r = call("GET", "/get_model_info", nullptr);
  EXPECT_EQ(json::parse(r->response.body)["is_generation"], true);
  EXPECT_THROW(call("GET", "/metrics", nullptr), ApiError);  // off without --enable-metrics
}

}  // namespace
