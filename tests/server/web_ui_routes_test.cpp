// The chat page's routes (routes_web_ui.cpp) over the embedded files: open without the API key,
// content types, the Content-Security-Policy, gzip only when accepted, every file the page refers to
// is served, no inline script and no other origin in the markup, and the first load within 200 KB.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "fake_server_util.h"
#include "server/api_error.h"
#include "server/routes.h"
#include "server/web_assets.h"

using namespace dsserve;
using namespace dsserve::server;

namespace {

class WebUiRoutesTest : public ::testing::Test {
 protected:
  WebUiRoutesTest() : router_("secret-key") { add_web_ui_routes(router_); }

  HttpResponse get(const std::string& path, const std::string& accept_encoding = "") {
    auto r = std::make_shared<test::FakeResponder>();
    Request req{"GET", path, "", "", {}};
    if (!accept_encoding.empty()) req.headers.emplace_back("accept-encoding", accept_encoding);
    router_.dispatch(req, r);
    EXPECT_TRUE(r->sent) << path;
    return r->response;
  }
  static std::string header(const HttpResponse& r, const std::string& name) {
    for (auto& [k, v] : r.headers)
      if (k == name) return v;
    return {};
  }
  static bool is_gzip(const std::string& body) {
    return body.size() > 2 && uint8_t(body[0]) == 0x1f && uint8_t(body[1]) == 0x8b;
  }

  Router router_;
};

TEST_F(WebUiRoutesTest, PageIsOpenWithoutTheApiKeyAndCarriesTheCsp) {
  HttpResponse r = get("/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  std::string csp = header(r, "Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_NE(r.body.find("<script type=\"module\" src=\"/assets/main.js\"></script>"), std::string::npos);
  // The API itself still wants the key.
  Router api("secret-key");
  api.add("GET", "/v1/models", [](const Request&, std::shared_ptr<Responder>) {});
  auto resp = std::make_shared<test::FakeResponder>();
  try {
    api.dispatch(Request{"GET", "/v1/models", "", "", {}}, resp);
    FAIL() << "expected 401";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 401);
  }
}

TEST_F(WebUiRoutesTest, MarkupHasNoInlineScriptNoHandlersAndNoOtherOrigin) {
  std::string html = get("/").body;
  std::regex script_tag("<script[^>]*>");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), script_tag); it != std::sregex_iterator(); ++it)
    EXPECT_NE(it->str().find(" src=\"/assets/"), std::string::npos) << "inline or foreign script: " << it->str();
  EXPECT_FALSE(std::regex_search(html, std::regex("\\son[a-z]+\\s*=", std::regex::icase))) << "inline event handler";
  EXPECT_FALSE(std::regex_search(html, std::regex("style\\s*=", std::regex::icase))) << "inline style";
  for (const char* path : {"/", "/assets/style.css"}) {
    std::string body = get(path).body;
    EXPECT_EQ(body.find("http://"), std::string::npos) << path;
    EXPECT_EQ(body.find("https://"), std::string::npos) << path;
    EXPECT_EQ(body.find("//cdn"), std::string::npos) << path;
  }
}

TEST_F(WebUiRoutesTest, EveryFileThePageRefersToIsServed) {
  std::set<std::string> served;
  for (const WebAsset& a : web_assets()) served.insert(std::string(a.path));
  std::string html = get("/").body;
  std::regex ref("(?:src|href)=\"(/[^\"]*)\"");
  int refs = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), ref); it != std::sregex_iterator(); ++it, ++refs)
    EXPECT_TRUE(served.count((*it)[1])) << "index.html refers to " << (*it)[1] << ", which is not embedded";
  EXPECT_GE(refs, 3);
  // Module imports between the scripts ("from './x.js'") resolve to embedded files too.
  std::regex import_from("from '\\./([a-z_.]+\\.js)'");
  for (const WebAsset& a : web_assets()) {
    std::string body(a.body);
    for (auto it = std::sregex_iterator(body.begin(), body.end(), import_from); it != std::sregex_iterator(); ++it)
      EXPECT_TRUE(served.count("/assets/" + (*it)[1].str())) << a.path << " imports " << (*it)[1];
  }
  EXPECT_TRUE(served.count("/assets/marked.esm.js"));
  EXPECT_EQ(get("/assets/marked.esm.js").body.find("sourceMappingURL"), std::string::npos);
  EXPECT_EQ(get("/assets/main.js").content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(get("/assets/style.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(get("/assets/icon.svg").content_type, "image/svg+xml");
  try {
    get("/assets/missing.js");
    FAIL() << "expected 404";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 404);
  }
}

TEST_F(WebUiRoutesTest, GzipOnlyWhenTheClientAcceptsIt) {
  const WebAsset* main_js = nullptr;
  for (const WebAsset& a : web_assets())
    if (a.path == "/assets/main.js") main_js = &a;
  ASSERT_NE(main_js, nullptr);
  for (const char* accepted : {"gzip", "gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8", "*", "GZIP"}) {
    HttpResponse r = get("/assets/main.js", accepted);
    EXPECT_EQ(header(r, "Content-Encoding"), "gzip") << accepted;
    EXPECT_TRUE(is_gzip(r.body)) << accepted;
    EXPECT_EQ(r.body, main_js->gzip_body) << accepted;
    EXPECT_EQ(header(r, "Vary"), "Accept-Encoding");
  }
  for (const char* refused : {"", "identity", "gzip;q=0", "br", "deflate, gzip;q=0.0"}) {
    HttpResponse r = get("/assets/main.js", refused);
    EXPECT_EQ(header(r, "Content-Encoding"), "") << refused;
    EXPECT_EQ(r.body, main_js->body) << refused;
  }
}

TEST_F(WebUiRoutesTest, FirstLoadFitsIn200KB) {
  size_t sent = 0, plain = 0;
  for (const WebAsset& a : web_assets()) {
    EXPECT_FALSE(a.body.empty()) << a.path;
    sent += std::min(a.body.size(), a.gzip_body.size());
    plain += a.body.size();
  }
  std::printf("chat page: %zu bytes of files, %zu bytes gzip-compressed\n", plain, sent);
  EXPECT_LE(sent, 200u * 1024u);
}

}  // namespace
