// The handle a route gets for answering one HTTP request: a whole response, or an SSE stream of
// chunks; a cancel hook fired when the client goes away first; and posting onto the connection's
// strand, where every method of the handle must be called. Routes never see sockets or Asio.
#pragma once
#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "server/http_message.h"

namespace dsserve::server {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // target without the query
  std::string query;
  std::string body;
  HeaderList headers;  // names lower-cased

  std::string header(std::string_view lower_name) const {
    for (auto& [k, v] : headers)
      if (k == lower_name) return v;
    return {};
  }
};

class Responder {
 public:
  virtual ~Responder() = default;
  // A complete response; ends the request. Later calls are ignored.
  virtual void send(HttpResponse r) = 0;
  // Starts a chunked text/event-stream response; then stream() each event, then end_stream().
  virtual void start_stream() = 0;
  virtual void stream(std::string data) = 0;
  virtual void end_stream() = 0;
  // Called once (on the strand) if the client disconnects before the request ended.
  virtual void on_cancel(std::function<void()> fn) = 0;
  virtual bool cancelled() const = 0;
  // Runs fn on this connection's strand; callable from any thread (engine callbacks).
  virtual void post(std::function<void()> fn) = 0;
  virtual void post_after(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
  // Who is asking (the connection): the engine admits waiting work round-robin over clients.
  virtual std::string client() const { return ""; }
};

}  // namespace dsserve::server
