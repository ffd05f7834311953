// Server-sent events as OpenAI and SGLang stream them: one `data: <json>` line and a blank line per
// event, `data: [DONE]` at the end.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace dsserve::server {

inline std::string sse_event(const nlohmann::json& j) { return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n"; }
inline std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace dsserve::server
