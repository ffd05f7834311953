// Fuzzes the request-body parsing of every JSON route: parse_json_body, then the parser of the
// route the first byte picks (chat, completions, /generate, responses). Anything but an ApiError
// (a 400) escaping, or a crash, is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/api_error.h"
#include "server/json_fields.h"
#include "server/request_parsing.h"
#include "server/responses_request.h"

using namespace dsserve::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    json j = parse_json_body(body);
    switch (data[0] % 4) {
      case 0: parse_chat_request(j); break;
      case 1: parse_completion_request(j); break;
      case 2: parse_generate_request(j, 128); break;
      default: parse_responses_request(j); break;
    }
  } catch (const ApiError&) {
  }
  return 0;
}
