// The HTTP listener: accepts connections on host:port and runs every session on a small pool of io
// threads (Boost.Asio; no thread per connection). run() blocks until stop(); stop_accepting()
// closes the listening socket while open connections finish. Beyond max_connections open ones, a
// new connection gets 503 and is closed; when accepting fails (out of file descriptors) the
// listener backs off (10 ms doubling to 1 s) and logs at most one line per 10 s.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "server/router.h"

namespace dsserve::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;         // 0: any free port (see bound_port())
  int io_threads = 2;
  size_t max_body_bytes = 32u << 20;
  int max_connections = 4096;
  double keep_alive_timeout_s = 5, header_timeout_s = 30, body_timeout_s = 60;  // see SessionLimits
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions opt, const Router& router);
  ~HttpServer();
  int bound_port() const;
  int open_connections() const;
  // Serves on io_threads threads (the caller's among them) until stop(). on_signal runs on an io
  // thread at the first SIGINT/SIGTERM (a second one exits at once).
  void run(std::function<void()> on_signal = nullptr);
  void stop_accepting();
  void stop();  // thread-safe: ends run()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsserve::server
