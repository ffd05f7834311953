// OpenAI-style error bodies (see api_error.h).
#include "server/api_error.h"

#include <nlohmann/json.hpp>

#include "server/sse.h"

namespace dsserve::server {

std::string error_body(const ApiError& e) {
  nlohmann::json err = {{"message", e.what()},
                        {"type", e.type},
                        {"param", e.param ? nlohmann::json(*e.param) : nlohmann::json(nullptr)},
                        {"code", e.code ? nlohmann::json(*e.code) : nlohmann::json(nullptr)}};  // OpenAI: a string or null
  // Messages may quote the client's bytes (a parse error echoes them): invalid UTF-8 becomes U+FFFD.
  return json_text(nlohmann::json{{"error", err}});
}

std::string error_body(int status, const std::string& message, const std::string& type) {
  return error_body(ApiError(status, message, type));
}

std::string error_type_for_status(int status) {
  switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default: return status >= 500 ? "internal_server_error" : "invalid_request_error";
  }
}

}  // namespace dsserve::server
