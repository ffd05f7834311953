// One HTTP connection (see http_session.h).
#include "server/http_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "server/api_error.h"
#include "text/utf8.h"

namespace dsserve::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// The Responder of one request: forwards to the session while that request is current.
class SessionResponder : public Responder {
 public:
  SessionResponder(std::shared_ptr<HttpSession> s, uint64_t seq) : s_(std::move(s)), seq_(seq) {}

  void send(HttpResponse r) override {
    if (!current() || s_->streaming_) return;
    bool keep = s_->keep_alive_ && !s_->peer_gone_;
    s_->enqueue(format_response(r, keep));
    s_->end_request(seq_);
  }
  void start_stream() override {
    if (!current() || s_->streaming_) return;
    s_->streaming_ = true;
    s_->enqueue(format_sse_header(s_->keep_alive_));
  }
  void stream(std::string data) override {
    if (!current() || !s_->streaming_ || s_->peer_gone_) return;
    s_->enqueue(format_chunk(data));
  }
  void end_stream() override {
    if (!current() || !s_->streaming_) return;
    if (!s_->peer_gone_) s_->enqueue(format_last_chunk());
    s_->end_request(seq_);
  }
  void on_cancel(std::function<void()> fn) override {
    if (s_->seq_ == seq_ && s_->peer_gone_) {
      fn();
      return;
    }
    if (!current()) return;
    s_->cancel_ = std::move(fn);
  }
  bool cancelled() const override { return !current() || s_->peer_gone_; }
  void post(std::function<void()> fn) override { net::post(s_->stream_.get_executor(), std::move(fn)); }
  void post_after(std::chrono::milliseconds delay, std::function<void()> fn) override {
    auto t = std::make_shared<net::steady_timer>(s_->stream_.get_executor(), delay);
    t->async_wait([t, fn = std::move(fn)](beast::error_code) { fn(); });
  }

 private:
  bool current() const { return s_->active_ && s_->seq_ == seq_; }
  std::shared_ptr<HttpSession> s_;
  uint64_t seq_;
};

HttpSession::HttpSession(net::ip::tcp::socket socket, const Router& router, SessionLimits limits)
    : stream_(std::move(socket)), router_(router), limits_(limits) {}

void HttpSession::start() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
}

void HttpSession::do_read() {
  if (reading_ || closed_ || peer_gone_) return;
  parser_.emplace();
  parser_->body_limit(limits_.max_body_bytes);
  parser_->header_limit(uint32_t(limits_.max_header_bytes));
  reading_ = true;
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
}

void HttpSession::on_read(beast::error_code ec) {
  reading_ = false;
  if (closed_) {  // closing: the client has seen our last answer
    beast::error_code ignored;
    stream_.socket().close(ignored);
    return;
  }
  if (ec == http::error::body_limit || ec == http::error::header_limit) {
    bool body = ec == http::error::body_limit;
    if (active_) {  // a pipelined oversized request behind a running one: drop the connection
      peer_gone();
      return;
    }
    HttpResponse r;
    r.status = body ? 413 : 431;
    r.body = error_body(r.status,
                        body ? fmt::format("request body exceeds the limit of {} bytes", limits_.max_body_bytes)
                             : "request headers too large",
                        "invalid_request_error");
    close_after_write_ = true;
    enqueue(format_response(r, false));
    return;
  }
  if (ec) {
    if (ec != http::error::end_of_stream && ec != net::error::operation_aborted && ec != net::error::eof &&
        ec != net::error::connection_reset && !active_ && !closed_) {
      // A malformed request line or header: answer 400 and close.
      HttpResponse r;
      r.status = 400;
      r.body = error_body(400, "malformed HTTP request: " + ec.message(), "invalid_request_error");
      close_after_write_ = true;
      enqueue(format_response(r, false));
      return;
    }
    peer_gone();
    return;
  }
  auto msg = parser_->release();
  Request req;
  req.method = std::string(msg.method_string());
  std::string_view target(msg.target().data(), msg.target().size());
  size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
  for (auto& f : msg) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    req.headers.emplace_back(std::move(name), std::string(f.value()));
  }
  req.body = std::move(msg.body());
  bool keep = msg.keep_alive();
  if (active_) {
    pending_ = std::move(req);
    pending_->headers.emplace_back("x-dsserve-keep-alive", keep ? "1" : "0");
    return;  // read again once the pipelined request is dispatched
  }
  keep_alive_ = keep;
  dispatch(std::move(req));
  do_read();
}

void HttpSession::dispatch(Request req) {
  active_ = true;
  streaming_ = false;
  cancel_ = nullptr;
  uint64_t seq = ++seq_;
  auto responder = std::make_shared<SessionResponder>(shared_from_this(), seq);
  try {
    if (size_t bad = text::utf8_first_invalid(req.path); bad != req.path.size())
      throw ApiError(400, fmt::format("request path is not valid UTF-8: invalid byte 0x{:02x} at offset {}",
                                      static_cast<unsigned char>(req.path[bad]), bad));
    router_.dispatch(req, responder);
  } catch (const ApiError& e) {
    HttpResponse r;
    r.status = e.status;
    r.body = error_body(e);
    if (e.retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
    if (e.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
    responder->send(std::move(r));
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", req.method, req.path, e.what());
    HttpResponse r;
    r.status = 500;
    r.body = error_body(500, e.what(), "internal_server_error");
    responder->send(std::move(r));
  }
}

void HttpSession::end_request(uint64_t seq) {
  if (!active_ || seq != seq_) return;
  active_ = false;
  streaming_ = false;
  cancel_ = nullptr;
  if (!keep_alive_ || peer_gone_) {
    close_after_write_ = true;
    if (!write_in_flight_ && out_.empty()) close();
    return;
  }
  if (pending_) {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->active_ || !self->pending_ || self->closed_) return;
      Request req = std::move(*self->pending_);
      self->pending_.reset();
      self->keep_alive_ = req.headers.back().second == "1";
      req.headers.pop_back();
      self->dispatch(std::move(req));
      self->do_read();
    });
  }
}

void HttpSession::enqueue(std::string bytes) {
  if (closed_ || bytes.empty()) return;
  out_.push_back(std::move(bytes));
  if (!write_in_flight_) do_write();
}

void HttpSession::do_write() {
  writing_.clear();
  while (!out_.empty()) {  // coalesce queued chunks into one write
    writing_ += out_.front();
    out_.pop_front();
  }
  write_in_flight_ = true;
  net::async_write(stream_, net::buffer(writing_),
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
}

void HttpSession::on_write(beast::error_code ec) {
  write_in_flight_ = false;
  if (ec) {
    out_.clear();
    peer_gone();
    return;
  }
  if (!out_.empty()) {
    do_write();
    return;
  }
  if (close_after_write_ && !active_) close();
}

void HttpSession::peer_gone() {
  if (peer_gone_) return;
  peer_gone_ = true;
  if (active_ && cancel_) {
    auto fn = std::move(cancel_);
    cancel_ = nullptr;
    fn();
  }
  // The request is over from the connection's side: later responder calls are no-ops.
  active_ = false;
  streaming_ = false;
  pending_.reset();
  out_.clear();
  closed_ = true;
  beast::error_code ec;
  stream_.socket().close(ec);
}

void HttpSession::close() {
  if (closed_) return;
  closed_ = true;
  // Graceful close: stop sending, then read and discard what the client still sends (the rest of an
  // oversized body) for a moment, so it sees our answer instead of a reset.
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (ec || peer_gone_) {
    stream_.socket().close(ec);
    return;
  }
  if (reading_) return;  // the posted request read sees the client's close (on_read closes)
  stream_.expires_after(std::chrono::seconds(2));
  drain();
}

void HttpSession::drain() {
  auto scratch = std::make_shared<std::array<char, 16384>>();
  stream_.async_read_some(net::buffer(*scratch), [self = shared_from_this(), scratch](beast::error_code ec, size_t) {
    if (ec) {
      beast::error_code ignored;
      self->stream_.socket().close(ignored);
      return;
    }
    self->drain();
  });
}

}  // namespace dsserve::server
