// Maps (method, path) to route handlers, with the --api-key check in front (bearer token; /health,
// /health_generate and /metrics stay open as in SGLang), 404 and 405 answers. A path ending in
// "/{}" also matches every longer path below it (the handler reads the rest: /v1/models/{id}).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "server/responder.h"

namespace dsserve::server {

using Handler = std::function<void(const Request&, std::shared_ptr<Responder>)>;

class Router {
 public:
  explicit Router(std::string api_key = "") : api_key_(std::move(api_key)) {}
  void add(const std::string& method, const std::string& path, Handler h, bool needs_auth = true);
  void set_log_requests(bool on) { log_requests_ = on; }  // --log-requests: one log line per request
  // The part of req.path a "/{}" route matched (percent-decoding is the handler's).
  static std::string tail(const Request& req, const std::string& route_path);
  // Throws ApiError (404, 405, 401) or whatever the handler throws synchronously.
  void dispatch(const Request& req, std::shared_ptr<Responder> r) const;

 private:
  struct Route {
    std::map<std::string, Handler> by_method;
    bool needs_auth = true;
  };
  std::string api_key_;
  bool log_requests_ = false;
  std::map<std::string, Route> routes_;
};

}  // namespace dsserve::server
