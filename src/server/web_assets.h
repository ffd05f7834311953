// The chat page's files, embedded at build time (web/CMakeLists.txt generates the definition):
// each with its URL path, content type, bytes as sent, and the same bytes gzip-compressed.
#pragma once
#include <span>
#include <string_view>

namespace dsserve::server {

struct WebAsset {
  std::string_view path;          // "/", "/assets/main.js", ...
  std::string_view content_type;  // "text/javascript; charset=utf-8", ...
  std::string_view body;
  std::string_view gzip_body;     // the body gzip-compressed (Content-Encoding: gzip)
};

std::span<const WebAsset> web_assets();

}  // namespace dsserve::server
