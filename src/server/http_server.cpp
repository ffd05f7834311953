// Listener, io thread pool and signal handling (see http_server.h).
#include "server/http_server.h"

#include <spdlog/spdlog.h>

#include <utility>  // before Asio: Boost 1.74 awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <thread>
#include <vector>

#include "core/error.h"
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
  std::function<void()> on_signal;
  bool signalled = false;

  Impl(HttpServerOptions o, const Router& r)
      : opt(std::move(o)), router(r), ioc(std::max(1, opt.io_threads)), acceptor(net::make_strand(ioc)),
        signals(ioc) {
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
        spdlog::warn("accept: {}", ec.message());  // e.g. out of file descriptors: keep going
      } else {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        SessionLimits lim;
        lim.max_body_bytes = opt.max_body_bytes;
        std::make_shared<HttpSession>(std::move(socket), router, lim)->start();
      }
      accept();
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
  });
}

void HttpServer::stop() { impl_->ioc.stop(); }

}  // namespace dsserve::server
