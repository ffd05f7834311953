// GET / and GET /assets/*: the built-in chat page (web/, embedded at build time; off with
// --disable-web-ui). Open without the API key (the page asks for it and sends it on the API routes).
// Every answer carries a Content-Security-Policy that allows only this server's own scripts, styles,
// images and connections (no inline script, no other origin), and is gzip-compressed when the client
// accepts it.
#include <cctype>
#include <cstdlib>
#include <string>

#include "server/routes.h"
#include "server/web_assets.h"

namespace dsserve::server {

namespace {

constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// True when Accept-Encoding lists gzip (or *) without q=0.
bool accepts_gzip(const std::string& accept_encoding) {
  size_t pos = 0;
  while (pos < accept_encoding.size()) {
    size_t end = accept_encoding.find(',', pos);
    if (end == std::string::npos) end = accept_encoding.size();
    std::string item = accept_encoding.substr(pos, end - pos);
    pos = end + 1;
    size_t semi = item.find(';');
    std::string coding = item.substr(0, semi);
    std::erase_if(coding, [](char c) { return c == ' ' || c == '\t'; });
    for (char& c : coding) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (coding != "gzip" && coding != "*") continue;
    if (semi == std::string::npos) return true;
    std::string params = item.substr(semi + 1);
    std::erase_if(params, [](char c) { return c == ' ' || c == '\t'; });
    if (params.rfind("q=", 0) != 0) return true;
    return std::strtod(params.c_str() + 2, nullptr) > 0;
  }
  return false;
}

HttpResponse asset_response(const WebAsset& a, const Request& req) {
  HttpResponse r;
  r.content_type = std::string(a.content_type);
  bool gzip = a.gzip_body.size() < a.body.size() && accepts_gzip(req.header("accept-encoding"));
  r.body = std::string(gzip ? a.gzip_body : a.body);
  if (gzip) r.headers.emplace_back("Content-Encoding", "gzip");
  r.headers.emplace_back("Vary", "Accept-Encoding");
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  return r;
}

}  // namespace

void add_web_ui_routes(Router& router) {
  for (const WebAsset& a : web_assets()) {
    const WebAsset* asset = &a;
    router.add("GET", std::string(a.path), [asset](const Request& req, std::shared_ptr<Responder> resp) {
      resp->send(asset_response(*asset, req));
    }, /*needs_auth=*/false);
  }
}

}  // namespace dsserve::server
