// Fuzzes the HTTP request path: the bytes of a connection parsed by Boost.Beast (the limits the
// server sets), turned into the router's request, and dispatched through every route (auth, 404,
// 405, body parsing, the engine refusing or answering) against a scripted engine without a
// tokenizer. Every answer must be an HttpResponse or a stream; an exception other than ApiError
// escaping, or a crash, is a finding.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "server/api_error.h"
#include "server/fake_server_util.h"
#include "server/http_session.h"
#include "server/routes.h"
#include "text/utf8.h"

using namespace dsserve;
using namespace dsserve::server;
namespace http = boost::beast::http;

namespace {
struct World {
  test::FakeEngine engine;
  std::unique_ptr<ServerContext> ctx;
  Router router{"fuzz-key"};
  World() {
    engine.script = {5, 6, 7};
    ServerSettings s;
    s.served_model_name = "m";
    ctx = std::make_unique<ServerContext>(engine, nullptr, nullptr, s);
    add_all_routes(router, *ctx);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World w;
  http::request_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  parser.header_limit(64 << 10);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;  // the session answers 400 / 413 / 431 and closes
  Request req = request_from_message(parser.release());
  if (!text::is_valid_utf8(req.path)) return 0;  // the session answers 400 before routing
  auto r = std::make_shared<test::FakeResponder>();
  try {
    w.router.dispatch(req, r);
    r->drain();
  } catch (const ApiError&) {
  }
  // The connection closes: what is still in flight is cancelled, as the session does (the
  // scripted engine sends nothing for max_new_tokens 0, so such requests are still running), and
  // the timers a route posted run once more and see the closed connection, as the session's
  // event loop runs them; then the responder lets go of what it held.
  r->closed = true;
  if (r->cancel) r->cancel();
  r->drain();
  for (int round = 0; round < 16 && r->fire_timers() > 0; ++round) r->drain();
  r->cancel = nullptr;
  r->timers.clear();
  w.engine.submitted.clear();
  w.engine.aborted.clear();
  return 0;
}
