// Route lookup and API-key check (see router.h).
#include "server/router.h"

#include <spdlog/spdlog.h>

#include "server/api_error.h"
#include "text/utf8.h"

namespace dsserve::server {

void Router::add(const std::string& method, const std::string& path, Handler h, bool needs_auth) {
  Route& r = routes_[path];
  r.by_method[method] = std::move(h);
  r.needs_auth = needs_auth;
}

namespace {
bool token_matches(const std::string& authorization, const std::string& key) {
  static const std::string bearer = "Bearer ";
  if (authorization.size() != bearer.size() + key.size()) return false;
  if (authorization.compare(0, bearer.size(), bearer) != 0 && authorization.compare(0, bearer.size(), "bearer ") != 0)
    return false;
  // Constant-time comparison of the key part.
  unsigned diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= unsigned(authorization[bearer.size() + i] ^ key[i]);
  return diff == 0;
}
}  // namespace

std::string Router::tail(const Request& req, const std::string& route_path) {
  const std::string prefix = route_path.substr(0, route_path.size() - 2);  // without "{}"
  return req.path.size() > prefix.size() ? req.path.substr(prefix.size()) : "";
}

void Router::dispatch(const Request& req, std::shared_ptr<Responder> r) const {
  if (log_requests_)
    spdlog::info("request: {} {} ({} body bytes, {})", req.method, text::utf8_lossy(req.path), req.body.size(),
                 r->client());
  std::string path = req.path;
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  auto it = routes_.find(path);
  if (it == routes_.end()) {  // the longest "/{}" route above the path
    for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0; slash = path.rfind('/', slash - 1)) {
      it = routes_.find(path.substr(0, slash + 1) + "{}");
      if (it != routes_.end()) break;
    }
  }
  if (it == routes_.end()) throw ApiError(404, "no route for " + req.method + " " + req.path, "not_found_error");
  if (it->second.needs_auth && !api_key_.empty() && !token_matches(req.header("authorization"), api_key_)) {
    ApiError e(401,
               req.header("authorization").empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                                   : "incorrect API key provided",
               "authentication_error", std::nullopt, std::string("invalid_api_key"));
    throw e;
  }
  auto m = it->second.by_method.find(req.method);
  if (m == it->second.by_method.end()) {
    std::string allowed;
    for (auto& [k, v] : it->second.by_method) allowed += (allowed.empty() ? "" : ", ") + k;
    throw ApiError(405, "method " + req.method + " not allowed on " + req.path + " (allowed: " + allowed + ")");
  }
  m->second(req, std::move(r));
}

}  // namespace dsserve::server
