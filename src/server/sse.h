// Server-sent events as OpenAI and SGLang stream them: one `data: <json>` line and a blank line per
// event, `data: [DONE]` at the end. Invalid UTF-8 in strings becomes U+FFFD instead of an error.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace dsserve::server {

template <typename Json>
std::string sse_event(const Json& j) {
  return "data: " + j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}
inline std::string sse_done() { return "data: [DONE]\n\n"; }

// A JSON body (invalid UTF-8 replaced, never thrown).
template <typename Json>
std::string json_text(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace dsserve::server
