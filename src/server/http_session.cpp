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

namespace {
std::atomic<uint64_t> g_connections{0};

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}
}  // namespace

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
    if (s_->http10_) s_->keep_alive_ = false;  // the end of the stream is the end of the connection
    s_->enqueue(format_sse_header(s_->keep_alive_, !s_->http10_));
  }
  void stream(std::string data) override {
    if (!current() || !s_->streaming_ || s_->peer_gone_) return;
    s_->enqueue(s_->http10_ ? std::move(data) : format_chunk(data));
  }
  void end_stream() override {
    if (!current() || !s_->streaming_) return;
    if (!s_->peer_gone_ && !s_->http10_) s_->enqueue(format_last_chunk());
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
  std::string client() const override { return s_->client_; }

 private:
  bool current() const { return s_->active_ && s_->seq_ == seq_; }
  std::shared_ptr<HttpSession> s_;
  uint64_t seq_;
};

HttpSession::HttpSession(net::ip::tcp::socket socket, const Router& router, SessionLimits limits,
                         std::shared_ptr<std::atomic<int>> open_sessions)
    : stream_(std::move(socket)), router_(router), limits_(limits), open_sessions_(std::move(open_sessions)),
      client_("connection " + std::to_string(++g_connections)), timer_(stream_.get_executor()) {
  if (open_sessions_) ++*open_sessions_;
}

HttpSession::~HttpSession() {
  if (open_sessions_) --*open_sessions_;
}

void HttpSession::start() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
}

// ---------------------------------------------------------------- timeouts
void HttpSession::arm_timer() {
  double s = 0;
  switch (phase_) {
    case ReadPhase::Waiting: s = limits_.keep_alive_timeout_s; break;
    case ReadPhase::Header: s = limits_.header_timeout_s; break;
    case ReadPhase::Body: s = limits_.body_timeout_s; break;
    case ReadPhase::None: return;
  }
  if (active_ || closed_ || s <= 0) return;
  const uint64_t gen = ++timer_gen_;
  const ReadPhase phase = phase_;
  timer_.expires_after(seconds(s));
  timer_.async_wait([self = shared_from_this(), gen, phase](beast::error_code ec) {
    if (ec || gen != self->timer_gen_ || self->active_ || self->closed_) return;
    spdlog::debug("{}: closed after {}", self->client_,
                  phase == ReadPhase::Waiting ? "the keep-alive timeout"
                  : phase == ReadPhase::Header ? "the request header timeout"
                                               : "the request body timeout");
    self->peer_gone();
  });
}

void HttpSession::disarm_timer() {
  ++timer_gen_;
  timer_.cancel();
}

// ---------------------------------------------------------------- reading
// Waits for the first byte of the next request (the keep-alive timeout runs meanwhile).
void HttpSession::do_read() {
  if (phase_ != ReadPhase::None || closed_ || peer_gone_) return;
  if (buffer_.size() > 0) {  // a pipelined request's bytes are here already
    read_header();
    return;
  }
  phase_ = ReadPhase::Waiting;
  arm_timer();
  stream_.socket().async_wait(net::ip::tcp::socket::wait_read,
                              [self = shared_from_this()](beast::error_code ec) { self->on_readable(ec); });
}

void HttpSession::on_readable(beast::error_code ec) {
  if (closed_ || ec) {  // closing (the client has seen our last answer), or the socket failed
    phase_ = ReadPhase::None;
    if (closed_) drain();
    else peer_gone();
    return;
  }
  read_header();
}

void HttpSession::read_header() {
  parser_.emplace();
  parser_->body_limit(limits_.max_body_bytes);
  parser_->header_limit(uint32_t(limits_.max_header_bytes));
  phase_ = ReadPhase::Header;
  arm_timer();
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
}

void HttpSession::on_header(beast::error_code ec) {
  if (read_failed(ec)) return;
  if (parser_->is_done()) {
    on_request();
    return;
  }
  // Expect: 100-continue: the client waits for this before it sends the body. Behind a request
  // still being answered it would interleave with that answer: the client's own wait then ends it.
  auto& h = parser_->get();
  auto expect = h[http::field::expect];
  if (!active_ && h.version() >= 11 && beast::iequals(expect, "100-continue"))
    enqueue("HTTP/1.1 100 Continue\r\n\r\n");
  phase_ = ReadPhase::Body;
  arm_timer();
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
}

void HttpSession::on_body(beast::error_code ec) {
  if (read_failed(ec)) return;
  on_request();
}

// Handles a failed read (true): the connection closing, an oversized or malformed request (an
// answer, then close), or the client gone.
bool HttpSession::read_failed(beast::error_code ec) {
  if (!ec && !closed_) return false;
  phase_ = ReadPhase::None;
  disarm_timer();
  if (closed_) {  // closing: the client has seen our last answer; discard what it still sends
    drain();
    return true;
  }
  if (ec == http::error::body_limit || ec == http::error::header_limit) {
    bool body = ec == http::error::body_limit;
    if (active_) {  // a pipelined oversized request behind a running one: drop the connection
      peer_gone();
      return true;
    }
    HttpResponse r;
    r.status = body ? 413 : 431;
    r.body = error_body(r.status,
                        body ? fmt::format("request body exceeds the limit of {} bytes", limits_.max_body_bytes)
                             : "request headers too large",
                        "invalid_request_error");
    close_after_write_ = true;
    enqueue(format_response(r, false));
    return true;
  }
  if (ec != http::error::end_of_stream && ec != http::error::partial_message && ec != net::error::operation_aborted &&
      ec != net::error::eof && ec != net::error::connection_reset && ec != net::error::bad_descriptor && !active_) {
    // A malformed request line or header: answer 400 and close.
    HttpResponse r;
    r.status = 400;
    r.body = error_body(400, "malformed HTTP request: " + ec.message(), "invalid_request_error");
    close_after_write_ = true;
    enqueue(format_response(r, false));
    return true;
  }
  peer_gone();
  return true;
}

Request request_from_message(http::request<http::string_body>&& msg) {
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
  return req;
}

void HttpSession::on_request() {
  phase_ = ReadPhase::None;
  disarm_timer();
  auto msg = parser_->release();
  const bool keep = msg.keep_alive(), http10 = msg.version() < 11;
  Request req = request_from_message(std::move(msg));
  if (active_) {
    pending_ = std::move(req);
    pending_keep_alive_ = keep;
    pending_http10_ = http10;
    return;  // read again once the pipelined request is dispatched
  }
  keep_alive_ = keep;
  http10_ = http10;
  dispatch(std::move(req));
  do_read();
}

// ---------------------------------------------------------------- answering
void HttpSession::dispatch(Request req) {
  active_ = true;
  disarm_timer();
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
      self->keep_alive_ = self->pending_keep_alive_;
      self->http10_ = self->pending_http10_;
      self->dispatch(std::move(req));
      self->do_read();
    });
    return;
  }
  arm_timer();  // idle again: the keep-alive (or a pipelined request's header) timeout runs
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
  disarm_timer();
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
  disarm_timer();
  // Graceful close: stop sending, then read and discard what the client still sends (the rest of an
  // oversized body) for a moment, so it sees our answer instead of a reset.
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (ec || peer_gone_) {
    stream_.socket().close(ec);
    return;
  }
  // A read still posted sees the client's close (and closes); in any case the socket goes within 2 s.
  timer_.expires_after(std::chrono::seconds(2));
  timer_.async_wait([self = shared_from_this()](beast::error_code e) {
    if (e) return;
    beast::error_code ignored;
    self->stream_.socket().close(ignored);
  });
  if (phase_ == ReadPhase::None) drain();
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
