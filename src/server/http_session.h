// One keep-alive HTTP connection: reads requests with Boost.Beast (header first, so that
// `Expect: 100-continue` is answered before the body; body limit -> 413), hands each to the router
// with a Responder, and writes answers and SSE chunks in order through one write queue (HTTP/1.0
// clients get the stream unchunked, ended by closing the connection). A read stays posted while a
// request is being answered, so a client that disconnects mid-stream is noticed at once and the
// route's cancel hook runs (it aborts the engine requests). Timeouts close the connection: idle
// (keep-alive) between requests, the header from its first byte, the body after the header; none
// runs while a request is being answered. Everything of a session runs on its strand; no thread is
// held per connection.
#pragma once
#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>

#include "server/router.h"

namespace dsserve::server {

struct SessionLimits {
  size_t max_body_bytes = 32u << 20;
  size_t max_header_bytes = 64u << 10;
  double keep_alive_timeout_s = 5;  // idle between requests (SGLang's uvicorn timeout_keep_alive)
  double header_timeout_s = 30;     // from a request's first byte to the end of its header
  double body_timeout_s = 60;       // from the end of the header to the end of the body
};

// The router's view of a parsed request: header names lower-cased, the target split at '?'.
Request request_from_message(boost::beast::http::request<boost::beast::http::string_body>&& msg);

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  // open_sessions counts the live sessions (the server's --max-connections); the session holds
  // one count until it is destroyed.
  HttpSession(boost::asio::ip::tcp::socket socket, const Router& router, SessionLimits limits,
              std::shared_ptr<std::atomic<int>> open_sessions = nullptr);
  ~HttpSession();
  void start();

 private:
  enum class ReadPhase { None, Waiting, Header, Body };
  void close();
  void drain();
  friend class SessionResponder;
  void do_read();
  void on_readable(boost::beast::error_code ec);
  void read_header();
  void on_header(boost::beast::error_code ec);
  void on_body(boost::beast::error_code ec);
  bool read_failed(boost::beast::error_code ec);
  void on_request();
  void dispatch(Request req);
  void end_request(uint64_t seq);
  void enqueue(std::string bytes);
  void do_write();
  void on_write(boost::beast::error_code ec);
  void peer_gone();
  // The timeout of the read phase the connection is in, while no request is being answered.
  void arm_timer();
  void disarm_timer();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  const Router& router_;
  SessionLimits limits_;
  std::shared_ptr<std::atomic<int>> open_sessions_;
  std::string client_;  // "connection N"
  boost::asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;

  ReadPhase phase_ = ReadPhase::None;
  bool active_ = false;            // a request is being answered
  uint64_t seq_ = 0;               // number of the current request
  bool keep_alive_ = true;
  bool http10_ = false;            // the current request is HTTP/1.0: no chunked stream
  bool streaming_ = false;
  bool peer_gone_ = false;
  bool close_after_write_ = false;
  bool closed_ = false;
  std::optional<Request> pending_;  // a pipelined request waiting for the current one
  bool pending_keep_alive_ = true, pending_http10_ = false;
  std::function<void()> cancel_;
  std::deque<std::string> out_;
  std::string writing_;
  bool write_in_flight_ = false;
};

}  // namespace dsserve::server
