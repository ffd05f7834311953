// Registration of the route families on a Router; each family lives in its own file:
// routes_native.cpp (/generate, /flush_cache, /get_model_info, /get_server_info),
// routes_openai_chat.cpp, routes_openai_completions.cpp, routes_openai_responses.cpp,
// routes_health_metrics.cpp (/health, /health_generate, /metrics, /v1/models, /v1/models/{id});
// routes_web_ui.cpp (the chat page on /, unless --disable-web-ui).
#pragma once
#include "server/router.h"
#include "server/server_context.h"

namespace dsserve::server {

void add_native_routes(Router& router, ServerContext& ctx);
void add_chat_routes(Router& router, ServerContext& ctx);
void add_completion_routes(Router& router, ServerContext& ctx);
void add_health_metrics_routes(Router& router, ServerContext& ctx);
void add_web_ui_routes(Router& router);
void add_responses_routes(Router& router, ServerContext& ctx);

inline void add_all_routes(Router& router, ServerContext& ctx) {
  add_native_routes(router, ctx);
  add_chat_routes(router, ctx);
  add_completion_routes(router, ctx);
  add_responses_routes(router, ctx);
  add_health_metrics_routes(router, ctx);
}

// A JSON answer.
HttpResponse json_response(std::string body, int status = 200);

}  // namespace dsserve::server
