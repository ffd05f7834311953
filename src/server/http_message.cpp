// HTTP/1.1 response formatting (see http_message.h).
#include "server/http_message.h"

#include <fmt/format.h>

namespace dsserve::server {

std::string_view status_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string format_response(const HttpResponse& r, bool keep_alive) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nServer: dsserve\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                                r.status, status_reason(r.status), r.content_type, r.body.size());
  for (auto& [k, v] : r.headers) out += fmt::format("{}: {}\r\n", k, v);
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  out += r.body;
  return out;
}

std::string format_sse_header(bool keep_alive, bool chunked) {
  return fmt::format(
      "HTTP/1.1 200 OK\r\nServer: dsserve\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "X-Accel-Buffering: no\r\n{}Connection: {}\r\n\r\n",
      chunked ? "Transfer-Encoding: chunked\r\n" : "", keep_alive && chunked ? "keep-alive" : "close");
}

std::string format_chunk(std::string_view data) {
  if (data.empty()) return {};
  std::string out = fmt::format("{:x}\r\n", data.size());
  out.append(data);
  out += "\r\n";
  return out;
}

std::string format_last_chunk() { return "0\r\n\r\n"; }

}  // namespace dsserve::server
