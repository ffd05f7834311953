// Listener, io thread pool and signal handling (see http_server.h).
#include "server/http_server.h"

#include <spdlog/spdlog.h>

#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/asio/signal_set.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "core/error.h"
#include "server/api_error.h"
#include "server/http_session.h"

namespace dsserve::server {

namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpServer::Impl {
  HttpServerOptions opt;
  const Router& router;
  net::io_context ioc;
  tcp::acceptor acceptor;
  net::signal_set signals;
  net::steady_timer backoff;
  std::function<void()> on_signal;
  bool signalled = false;
  std::shared_ptr<std::atomic<int>> open = std::make_shared<std::atomic<int>>(0);
  // Accept failures: the current back-off, and the rate-limited log.
  std::chrono::milliseconds backoff_delay{0};
  std::chrono::steady_clock::time_point last_failure_log{};
  int failures_unlogged = 0;

  Impl(HttpServerOptions o, const Router& r)
      : opt(std::move(o)), router(r), ioc(std::max(1, opt.io_threads)), acceptor(net::make_strand(ioc)),
        signals(ioc), backoff(acceptor.get_executor()) {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(opt.host, ec);
    if (ec) {
      // A host name: resolve it.
      tcp::resolver res(ioc);
      auto results = res.resolve(opt.host, std::to_string(opt.port), ec);
      DS_CHECK(!ec && !results.empty(), "--host: cannot resolve '{}': {}", opt.host, ec.message());
      addr = results.begin()->endpoint().address();
    }
    tcp::endpoint ep(addr, uint16_t(opt.port));
    acceptor.open(ep.protocol(), ec);
    DS_CHECK(!ec, "cannot open a socket for {}:{}: {}", opt.host, opt.port, ec.message());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep, ec);
    DS_CHECK(!ec, "cannot bind {}:{}: {}", opt.host, opt.port, ec.message());
    acceptor.listen(net::socket_base::max_listen_connections, ec);
    DS_CHECK(!ec, "cannot listen on {}:{}: {}", opt.host, opt.port, ec.message());
  }

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        accept_failed(ec);  // e.g. out of file descriptors: wait, then keep going
        return;
      }
      backoff_delay = std::chrono::milliseconds(0);
      if (open->load() >= opt.max_connections) {
        turn_away(std::move(socket));
      } else {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        SessionLimits lim;
        lim.max_body_bytes = opt.max_body_bytes;
        lim.keep_alive_timeout_s = opt.keep_alive_timeout_s;
        lim.header_timeout_s = opt.header_timeout_s;
        lim.body_timeout_s = opt.body_timeout_s;
        std::make_shared<HttpSession>(std::move(socket), router, lim, open)->start();
      }
      accept();
    });
  }

  // Accepting failed: retry after a back-off that doubles up to 1 s; one log line per 10 s at most.
  void accept_failed(const boost::system::error_code& ec) {
    backoff_delay = std::clamp(backoff_delay * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    ++failures_unlogged;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_failure_log >= std::chrono::seconds(10)) {
      spdlog::warn("accept: {} ({} failure(s) since the last report; {} connections open); retrying with back-off "
                   "up to 1 s", ec.message(), failures_unlogged, open->load());
      failures_unlogged = 0;
      last_failure_log = now;
    }
    backoff.expires_after(backoff_delay);
    backoff.async_wait([this](boost::system::error_code e) {
      if (!e && acceptor.is_open()) accept();
    });
  }

  // Over --max-connections: a 503 and the connection closed.
  static void turn_away(tcp::socket socket) {
    auto s = std::make_shared<tcp::socket>(std::move(socket));
    static const std::string answer = format_response(
        HttpResponse{503, "application/json",
                     error_body(503, "too many open connections (--max-connections); retry later",
                                "service_unavailable_error"),
                     {{"Retry-After", "1"}}},
        false);
    net::async_write(*s, net::buffer(answer), [s](boost::system::error_code, size_t) {
      boost::system::error_code ignored;
      s->shutdown(tcp::socket::shutdown_both, ignored);
      s->close(ignored);
    });
  }

  void wait_signal() {
    signals.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (signalled) {
        spdlog::warn("second signal {}: exiting now", sig);
        std::_Exit(0);
      }
      signalled = true;
      spdlog::info("signal {}: shutting down", sig);
      if (on_signal) on_signal();
      wait_signal();
    });
  }
};

HttpServer::HttpServer(HttpServerOptions opt, const Router& router)
    : impl_(std::make_unique<Impl>(std::move(opt), router)) {}
HttpServer::~HttpServer() = default;

int HttpServer::bound_port() const { return impl_->acceptor.local_endpoint().port(); }
int HttpServer::open_connections() const { return impl_->open->load(); }

void HttpServer::run(std::function<void()> on_signal) {
  impl_->on_signal = std::move(on_signal);
  if (impl_->on_signal) {
    impl_->signals.add(SIGINT);
    impl_->signals.add(SIGTERM);
    impl_->wait_signal();
  }
  impl_->accept();
  std::vector<std::thread> threads;
  for (int i = 1; i < impl_->opt.io_threads; ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : threads) t.join();
}

void HttpServer::stop_accepting() {
  net::post(impl_->acceptor.get_executor(), [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->backoff.cancel();
  });
}

void HttpServer::stop() { impl_->ioc.stop(); }

}  // namespace dsserve::server
