// GET /health (200 while serving, 503 while shutting down), GET /health_generate (a one-token
// generation; 503 when it does not come back within the timeout), GET /metrics (Prometheus text,
// with --enable-metrics) and GET /v1/models (--served-model-name).
#include <cctype>
#include <chrono>

#include "server/api_error.h"
#include "server/job_group.h"
#include "server/response_builders.h"
#include "server/routes.h"
#include "server/sse.h"

namespace dsserve::server {

namespace {

HttpResponse text_response(std::string body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

// The one model, as OpenAI's model object.
ojson model_json(const ServerContext& ctx) {
  int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  return {{"id", ctx.settings.served_model_name}, {"object", "model"},
          {"created", created},                     {"owned_by", "dsserve"},
          {"root", ctx.settings.served_model_name}, {"max_model_len", ctx.engine.context_length()}};
}

// "%2F" -> "/" (a model id may hold slashes, which clients escape); other bytes as they are.
std::string percent_decode(const std::string& s) {
  auto hex = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10); };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += char(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// As SGLang's: healthy as soon as the engine shows it works (the one-token request comes back, or
// the engine makes progress on other work, so a busy server is not kept waiting behind its queue);
// 503 when the device failed, or when nothing moved within --health-generate-timeout (a stuck
// engine).
void handle_health_generate(ServerContext& ctx, std::shared_ptr<Responder> responder) {
  if (ctx.shutting_down) throw ApiError(503, "the server is shutting down", "service_unavailable_error");
  const EngineStats before = ctx.engine.stats();
  if (!before.fatal_error.empty())
    throw ApiError(503, "the device failed: " + before.fatal_error, "service_unavailable_error");
  GenerationRequest g;
  g.rid = ctx.new_id("HEALTH_CHECK_");
  int32_t bos = ctx.tokenizer && ctx.tokenizer->bos_id >= 0 ? ctx.tokenizer->bos_id : 0;
  g.input_ids = {bos};
  g.sampling.temperature = 0;
  g.sampling.max_new_tokens = 1;
  g.sampling.ignore_eos = true;
  auto job = std::make_shared<GenerationJob>(ctx, responder, std::move(g), TextOptions{});
  auto done = std::make_shared<bool>(false);
  auto answer = [responder, done, job](int status, const std::string& why) {
    if (*done) return;
    *done = true;
    job->cancel();
    if (status == 200)
      responder->send(text_response(""));
    else
      responder->send(json_response(error_body(503, why, "service_unavailable_error"), 503));
  };
  try {
    job->start([answer](GenerationJob& j, const std::string&, size_t) {
      if (!j.finished()) return;
      if (j.finish.type == "abort") answer(503, "health generation aborted: " + j.finish.message);
      else answer(200, "");
    });
  } catch (const ApiError& e) {
    if (e.status != 503 || e.code != std::optional<std::string>("queue_full")) throw;
    // A full queue: the engine's progress on that work is the answer.
  }
  responder->on_cancel([job] { job->cancel(); });
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(int64_t(ctx.settings.health_generate_timeout_s * 1000));
  auto poll = std::make_shared<std::function<void()>>();
  ServerContext* c = &ctx;
  *poll = [c, responder, done, answer, deadline, poll, progress0 = before.progress] {
    if (*done || responder->cancelled()) {
      *poll = nullptr;  // breaks the cycle through the closure
      return;
    }
    const EngineStats st = c->engine.stats();
    if (!st.fatal_error.empty()) {
      answer(503, "the device failed: " + st.fatal_error);
    } else if (st.progress != progress0) {
      answer(200, "");
    } else if (std::chrono::steady_clock::now() >= deadline) {
      answer(503, fmt::format("the engine made no progress within {} s (--health-generate-timeout)",
                              c->settings.health_generate_timeout_s));
    } else {
      responder->post_after(std::chrono::milliseconds(100), *poll);
      return;
    }
    *poll = nullptr;
  };
  responder->post_after(std::chrono::milliseconds(100), *poll);
}

}  // namespace

void add_health_metrics_routes(Router& router, ServerContext& ctx) {
  ServerContext* c = &ctx;
  router.add("GET", "/health", [c](const Request&, std::shared_ptr<Responder> resp) {
    if (c->shutting_down) throw ApiError(503, "the server is shutting down", "service_unavailable_error");
    resp->send(text_response(""));
  }, false);
  router.add("GET", "/health_generate", [c](const Request&, std::shared_ptr<Responder> resp) {
    handle_health_generate(*c, std::move(resp));
  }, false);
  router.add("GET", "/metrics", [c](const Request&, std::shared_ptr<Responder> resp) {
    if (!c->settings.enable_metrics)
      throw ApiError(404, "metrics are off: start the server with --enable-metrics", "not_found_error");
    HttpResponse r = text_response(c->metrics.render(c->engine.stats(), c->settings.served_model_name));
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->send(std::move(r));
  }, false);
  router.add("GET", "/v1/models", [c](const Request&, std::shared_ptr<Responder> resp) {
    resp->send(json_response(json_text(ojson{{"object", "list"}, {"data", ojson::array({model_json(*c)})}})));
  });
  router.add("GET", "/v1/models/{}", [c](const Request& r, std::shared_ptr<Responder> resp) {
    const std::string id = percent_decode(Router::tail(r, "/v1/models/{}"));
    if (id != c->settings.served_model_name)
      throw ApiError(404, fmt::format("The model '{}' does not exist", id), "invalid_request_error",
                     std::string("model"), std::string("model_not_found"));
    resp->send(json_response(json_text(model_json(*c))));
  });
}

}  // namespace dsserve::server
