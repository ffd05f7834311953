// GET /health (200 while serving, 503 while shutting down), GET /health_generate (a one-token
// generation; 503 when it does not come back within the timeout), GET /metrics (Prometheus text,
// with --enable-metrics) and GET /v1/models (--served-model-name).
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

void handle_health_generate(ServerContext& ctx, std::shared_ptr<Responder> responder) {
  if (ctx.shutting_down) throw ApiError(503, "the server is shutting down", "service_unavailable_error");
  GenerationRequest g;
  g.rid = ctx.new_id("HEALTH_CHECK_");
  int32_t bos = ctx.tokenizer && ctx.tokenizer->bos_id >= 0 ? ctx.tokenizer->bos_id : 0;
  g.input_ids = {bos};
  g.sampling.temperature = 0;
  g.sampling.max_new_tokens = 1;
  g.sampling.ignore_eos = true;
  auto job = std::make_shared<GenerationJob>(ctx, responder, std::move(g), TextOptions{});
  auto done = std::make_shared<bool>(false);
  job->start([responder, done](GenerationJob& j, const std::string&, size_t) {
    if (!j.finished() || *done) return;
    *done = true;
    if (j.finish.type == "abort")
      responder->send(json_response(error_body(503, "health generation aborted: " + j.finish.message,
                                                "service_unavailable_error"),
                                    503));
    else
      responder->send(text_response(""));
  });
  responder->on_cancel([job] { job->cancel(); });
  auto timeout = std::chrono::milliseconds(int64_t(ctx.settings.health_generate_timeout_s * 1000));
  responder->post_after(timeout, [responder, done, job, timeout] {
    if (*done) return;
    *done = true;
    job->cancel();
    responder->send(json_response(
        error_body(503, fmt::format("health generation did not finish within {} ms", timeout.count()),
                   "service_unavailable_error"),
        503));
  });
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
    int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
    ojson model = {{"id", c->settings.served_model_name}, {"object", "model"},
                   {"created", created},                   {"owned_by", "dsserve"},
                   {"root", c->settings.served_model_name}, {"max_model_len", c->engine.context_length()}};
    resp->send(json_response(json_text(ojson{{"object", "list"}, {"data", ojson::array({model})}})));
  });
}

}  // namespace dsserve::server
