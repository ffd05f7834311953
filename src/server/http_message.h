// Formatting of HTTP/1.1 responses on the wire: whole responses with Content-Length, and the
// header, chunks and trailer of a chunked (SSE) response. Requests are parsed by Boost.Beast; the
// answers are plain strings so a session can queue them behind one another.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsserve::server {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;  // extra headers (Retry-After, WWW-Authenticate, ...)
};

std::string_view status_reason(int status);
std::string format_response(const HttpResponse& r, bool keep_alive);
// Header of a text/event-stream response: chunked, or (HTTP/1.0) plain and ended by closing.
std::string format_sse_header(bool keep_alive, bool chunked = true);
// One chunk of a chunked body (empty data gives an empty string: nothing to send).
std::string format_chunk(std::string_view data);
std::string format_last_chunk();

}  // namespace dsserve::server
