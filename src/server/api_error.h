// HTTP errors with OpenAI-style bodies: {"error": {"message", "type", "param", "code"}}. Route code
// throws ApiError; the session turns it into the response. Nothing here touches sockets.
#pragma once
#include <fmt/format.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace dsserve::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error",
           std::optional<std::string> param = std::nullopt, std::optional<std::string> code = std::nullopt)
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}

  int status;
  std::string type;
  std::optional<std::string> param;
  std::optional<std::string> code;
  int retry_after_s = 0;  // > 0: sent as Retry-After (503 when the queue is full)
};

// 400 invalid_request_error naming the offending parameter.
template <typename... Args>
[[noreturn]] void bad_request(const std::string& param, fmt::format_string<Args...> f, Args&&... args) {
  throw ApiError(400, fmt::format(f, std::forward<Args>(args)...), "invalid_request_error",
                 param.empty() ? std::nullopt : std::optional<std::string>(param));
}

// The JSON text of the error body.
std::string error_body(const ApiError& e);
std::string error_body(int status, const std::string& message, const std::string& type);
// OpenAI's error type for a status: 400 invalid_request_error, 401 authentication_error, ...
std::string error_type_for_status(int status);

}  // namespace dsserve::server
