// The body of POST /v1/responses (OpenAI's Responses API, text only) parsed and validated:
// `input` as a string or a list of messages (text content parts), `instructions` as the system
// message, `max_output_tokens`, the sampling fields; features dsserve lacks (tools, stored
// conversations, images, structured output) are 400s naming the field.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "runtime/request.h"
#include "server/generation_job.h"
#include "server/json_fields.h"

namespace dsserve::server {

struct ResponsesRequest {
  nlohmann::ordered_json messages;  // chat messages: instructions (system), then input
  std::optional<std::string> instructions;
  SamplingParams sampling;
  TextOptions text;
  std::optional<int64_t> max_output_tokens;
  bool stream = false;
  double temperature = 1.0, top_p = 1.0;  // as the response object echoes them
  nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
  std::optional<std::string> user;
  std::string rid;                          // SGLang's request_id
  nlohmann::ordered_json chat_template_kwargs;  // object or null
};

ResponsesRequest parse_responses_request(const json& body);

}  // namespace dsserve::server
