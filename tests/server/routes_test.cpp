// The routes against a scripted engine and the real DeepSeek-V3 tokenizer: response shapes of
// /generate, chat and completions (plain and streaming), stop strings (trimmed, engine request
// aborted, finish reason stop), queue full -> 503 with Retry-After, client disconnect -> abort.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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

TEST_F(RoutesTest, QueueFullIs503WithRetryAfter) {
  engine_.submit_error = "queue full: 4096 requests are waiting (limit 4096); retry later";
  try {
    call("POST", "/generate", {{"text", "x"}});
    FAIL() << "expected 503";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_GT(e.retry_after_s, 0);
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
