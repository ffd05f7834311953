// One keep-alive HTTP connection: reads requests with Boost.Beast (body limit -> 413), hands each to
// the router with a Responder, and writes answers and SSE chunks in order through one write queue.
// A read stays posted while a request is being answered, so a client that disconnects mid-stream
// is noticed at once and the route's cancel hook runs (it aborts the engine requests).
// Everything of a session runs on its strand; no thread is held per connection.
#pragma once
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <deque>
#include <memory>
#include <optional>

#include "server/router.h"

namespace dsserve::server {

struct SessionLimits {
  size_t max_body_bytes = 32u << 20;
  size_t max_header_bytes = 64u << 10;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, const Router& router, SessionLimits limits);
  void start();

 private:
  void close();
  void drain();
  friend class SessionResponder;
  void do_read();
  void on_read(boost::beast::error_code ec);
  void dispatch(Request req);
  void end_request(uint64_t seq);
  void enqueue(std::string bytes);
  void do_write();
  void on_write(boost::beast::error_code ec);
  void peer_gone();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  const Router& router_;
  SessionLimits limits_;

  bool reading_ = false;
  bool active_ = false;            // a request is being answered
  uint64_t seq_ = 0;               // number of the current request
  bool keep_alive_ = true;
  bool streaming_ = false;
  bool peer_gone_ = false;
  bool close_after_write_ = false;
  bool closed_ = false;
  std::optional<Request> pending_;  // a pipelined request waiting for the current one
  std::function<void()> cancel_;
  std::deque<std::string> out_;
  std::string writing_;
  bool write_in_flight_ = false;
};

}  // namespace dsserve::server
