// Wire formatting of responses and SSE chunks, error bodies, and the router's 404/405/401 answers.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/http_message.h"
#include "server/metrics.h"
#include "server/router.h"
#include "server/sse.h"
#include "fake_server_util.h"

using namespace dsserve::server;

TEST(HttpMessage, WholeResponse) {
  HttpResponse r;
  r.status = 503;
  r.body = "{}";
  r.headers.emplace_back("Retry-After", "1");
  std::string s = format_response(r, true);
  EXPECT_EQ(s.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u);
  EXPECT_NE(s.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(s.find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(s.find("Connection: keep-alive\r\n\r\n{}"), std::string::npos);
  EXPECT_NE(format_response(r, false).find("Connection: close"), std::string::npos);
}

TEST(HttpMessage, ChunkedSse) {
  EXPECT_NE(format_sse_header(true).find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(format_sse_header(true).find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_EQ(format_chunk("hello"), "5\r\nhello\r\n");
  EXPECT_EQ(format_chunk(std::string(26, 'x')).substr(0, 4), "1a\r\n");
  EXPECT_EQ(format_chunk(""), "");
  EXPECT_EQ(format_last_chunk(), "0\r\n\r\n");
  EXPECT_EQ(sse_event(nlohmann::json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // Invalid UTF-8 never throws: it becomes U+FFFD.
  EXPECT_NO_THROW(sse_event(nlohmann::json{{"t", std::string("\xff")}}));
}

TEST(ApiErrorBody, OpenAIShape) {
  ApiError e(400, "bad temperature", "invalid_request_error", std::string("temperature"));
  auto j = nlohmann::json::parse(error_body(e));
  EXPECT_EQ(j["error"]["message"], "bad temperature");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_TRUE(j["error"]["code"].is_null()) << "OpenAI's code is a string or null, never the status";
  ApiError coded(503, "full", "service_unavailable_error", std::nullopt, std::string("queue_full"));
  j = nlohmann::json::parse(error_body(coded));
  EXPECT_EQ(j["error"]["code"], "queue_full");
  EXPECT_TRUE(j["error"]["param"].is_null());
}

TEST(HttpMessage, StreamsForHttp10AreNotChunked) {
  std::string h = format_sse_header(true, false);
  EXPECT_EQ(h.find("Transfer-Encoding"), std::string::npos) << h;
  EXPECT_NE(h.find("Connection: close"), std::string::npos) << h;
  EXPECT_NE(format_sse_header(true).find("Transfer-Encoding: chunked"), std::string::npos);
}

TEST(Router, NotFoundMethodAndAuth) {
  Router router("sk-1");
  int calls = 0;
  router.add("POST", "/generate", [&](const Request&, std::shared_ptr<Responder>) { ++calls; });
  router.add("GET", "/health", [&](const Request&, std::shared_ptr<Responder>) { ++calls; }, false);
  auto resp = std::make_shared<dsserve::test::FakeResponder>();
  auto status_of = [&](Request r) {
    try {
      router.dispatch(r, resp);
    } catch (const ApiError& e) {
      return e.status;
    }
    return 200;
  };
  EXPECT_EQ(status_of({"GET", "/nope", "", "", {}}), 404);
  EXPECT_EQ(status_of({"POST", "/generate", "", "", {}}), 401);
  EXPECT_EQ(status_of({"POST", "/generate", "", "", {{"authorization", "Bearer sk-2"}}}), 401);
  EXPECT_EQ(status_of({"GET", "/generate", "", "", {{"authorization", "Bearer sk-1"}}}), 405);
  EXPECT_EQ(status_of({"POST", "/generate", "", "", {{"authorization", "Bearer sk-1"}}}), 200);
  EXPECT_EQ(status_of({"GET", "/health", "", "", {}}), 200);   // open route
  EXPECT_EQ(status_of({"GET", "/health/", "", "", {}}), 200);  // trailing slash
  EXPECT_EQ(calls, 3);
}

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.on_request_finished(0.05, 0.5, 10, 20, false);
  dsserve::EngineStats s;
  s.running_requests = 3;
  s.kv_pages_total = 100;
  s.kv_pages_used = 25;
  s.prompt_tokens_total = 40;
  s.cached_tokens_total = 10;
  std::string t = m.render(s, "m");
  EXPECT_NE(t.find("sglang:num_running_reqs{model_name=\"m\"} 3"), std::string::npos);
  EXPECT_NE(t.find("sglang:token_usage{model_name=\"m\"} 0.25"), std::string::npos);
  EXPECT_NE(t.find("sglang:cache_hit_rate{model_name=\"m\"} 0.25"), std::string::npos);
  EXPECT_NE(t.find("sglang:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.06\"} 1"), std::string::npos);
  EXPECT_NE(t.find("sglang:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.04\"} 0"), std::string::npos);
  EXPECT_NE(t.find("sglang:e2e_request_latency_seconds_count{model_name=\"m\"} 1"), std::string::npos);
  EXPECT_NE(t.find("sglang:time_per_output_token_seconds_sum{model_name=\"m\"} 0.05"), std::string::npos);
}
