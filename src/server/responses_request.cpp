// Parsing of /v1/responses bodies (see responses_request.h).
#include "server/responses_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "runtime/engine_error.h"
#include "server/api_error.h"

namespace dsserve::server {

namespace {

const std::set<std::string> kKnownFields = {
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "stream_options",
    "metadata", "user", "store", "parallel_tool_calls", "tool_choice", "tools", "truncation", "text", "reasoning",
    "include", "previous_response_id", "conversation", "service_tier", "prompt_cache_key", "safety_identifier",
    "top_logprobs", "max_tool_calls", "background", "prompt",
    // SGLang's extensions
    "top_k", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty", "seed", "stop", "ignore_eos",
    "request_id", "chat_template_kwargs", "skip_special_tokens", "priority"};

// A message's content as one string: a string, or a list of text parts.
std::string content_text(const json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(param, "'{}' must be a string or a list of content parts", param);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string p = fmt::format("{}[{}]", param, i);
    if (!part.is_object()) bad_request(p, "'{}' must be an object", p);
    const std::string type = get_string(part, "type", p + ".").value_or("");
    if (type == "input_text" || type == "output_text" || type == "text") {
      auto t = get_string(part, "text", p + ".");
      if (!t) bad_request(p + ".text", "'{}.text' is required", p);
      text += *t;
    } else if (type == "refusal") {
      text += get_string(part, "refusal", p + ".").value_or("");
    } else {
      bad_request(p + ".type", "content parts of type '{}' are not supported: this is a text-only model", type);
    }
  }
  return text;
}

void parse_input(const json& b, ResponsesRequest& r) {
  auto it = b.find("input");
  if (it == b.end() || it->is_null()) bad_request("input", "'input' is required");
  if (it->is_string()) {
    r.messages.push_back({{"role", "user"}, {"content", it->get<std::string>()}});
    return;
  }
  if (!it->is_array()) bad_request("input", "'input' must be a string or a list of messages, found {}", json_type_name(*it));
  if (it->empty()) bad_request("input", "'input' must hold at least one message");
  static const std::set<std::string> roles = {"user", "system", "developer", "assistant"};
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string p = fmt::format("input[{}]", i);
    if (!m.is_object()) bad_request(p, "'{}' must be an object", p);
    const std::string type = get_string(m, "type", p + ".").value_or("message");
    if (type != "message")
      bad_request(p + ".type", "input items of type '{}' are not supported: send messages (tools and stored "
                  "responses are not available on /v1/responses yet)", type);
    auto role = get_string(m, "role", p + ".");
    if (!role) bad_request(p + ".role", "'{}.role' is required", p);
    if (!roles.count(*role)) bad_request(p + ".role", "'{}.role' must be user, system, developer or assistant, found '{}'", p, *role);
    auto c = m.find("content");
    if (c == m.end() || c->is_null()) bad_request(p + ".content", "'{}.content' is required", p);
    r.messages.push_back({{"role", *role == "developer" ? "system" : *role}, {"content", content_text(*c, p + ".content")}});
  }
}

void reject_if_given(const json& b, const std::string& key, const std::string& why) {
  auto it = b.find(key);
  if (it == b.end() || it->is_null()) return;
  if ((it->is_array() || it->is_object()) && it->empty()) return;
  if (it->is_boolean() && !it->get<bool>()) return;
  bad_request(key, "'{}' is not supported: {}", key, why);
}

}  // namespace

ResponsesRequest parse_responses_request(const json& b) {
  reject_unknown_fields(b, kKnownFields);
  ResponsesRequest r;
  r.messages = nlohmann::ordered_json::array();
  if (auto v = get_string(b, "instructions")) {
    r.instructions = *v;
    r.messages.push_back({{"role", "system"}, {"content", *v}});
  }
  parse_input(b, r);
  get_string(b, "model");
  const char* stateless = "dsserve stores no responses: send the whole conversation as 'input'";
  reject_if_given(b, "previous_response_id", stateless);
  reject_if_given(b, "conversation", stateless);
  reject_if_given(b, "background", "responses are answered while the request is open");
  reject_if_given(b, "prompt", "stored prompt templates are not available");
  reject_if_given(b, "tools", "tools are not available on /v1/responses yet (use /v1/chat/completions)");
  reject_if_given(b, "top_logprobs", "log-probabilities are not available on /v1/responses yet");
  if (auto it = b.find("tool_choice"); it != b.end() && !it->is_null() && *it != "none" && *it != "auto")
    bad_request("tool_choice", "'tool_choice' must be none or auto: tools are not available on /v1/responses yet");
  if (auto it = b.find("text"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("text", "'text' must be an object");
    if (auto f = it->find("format"); f != it->end() && !f->is_null()) {
      if (!f->is_object()) bad_request("text.format", "'text.format' must be an object");
      const std::string type = get_string(*f, "type", "text.format.").value_or("text");
      if (type != "text")
        bad_request("text.format", "text.format type '{}' is not supported on /v1/responses yet", type);
    }
  }
  SamplingParams& s = r.sampling;
  if (auto v = get_number(b, "temperature")) {
    check_range(*v, 0, 2, "temperature");
    s.temperature = float(*v);
    r.temperature = *v;
  }
  if (auto v = get_number(b, "top_p")) s.top_p = float(*v), r.top_p = *v;
  if (auto v = get_integer(b, "top_k")) s.top_k = *v == 0 ? -1 : int(std::clamp<int64_t>(*v, INT32_MIN, INT32_MAX));
  if (auto v = get_number(b, "min_p")) s.min_p = float(*v);
  if (auto v = get_number(b, "repetition_penalty")) s.repetition_penalty = float(*v);
  if (auto v = get_number(b, "frequency_penalty")) s.frequency_penalty = float(*v);
  if (auto v = get_number(b, "presence_penalty")) s.presence_penalty = float(*v);
  if (auto v = get_integer(b, "seed")) s.seed = uint64_t(*v);
  s.ignore_eos = get_bool(b, "ignore_eos").value_or(false);
  r.text.stop = get_string_or_list(b, "stop");
  for (auto& st : r.text.stop)
    if (st.empty()) bad_request("stop", "'stop' strings must not be empty");
  r.text.skip_special_tokens = get_bool(b, "skip_special_tokens").value_or(true);
  if (auto v = get_integer(b, "max_output_tokens")) {
    if (*v < 1) bad_request("max_output_tokens", "'max_output_tokens' must be at least 1, found {}", *v);
    r.max_output_tokens = *v;
  }
  r.stream = get_bool(b, "stream").value_or(false);
  if (auto it = b.find("stream_options"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad_request("stream_options", "'stream_options' is only allowed when 'stream' is true");
  }
  if (auto it = b.find("metadata"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("metadata", "'metadata' must be an object of strings");
    r.metadata = nlohmann::ordered_json::parse(it->dump());
  }
  r.user = get_string(b, "user");
  r.rid = get_string(b, "request_id").value_or("");
  get_bool(b, "store");
  get_bool(b, "parallel_tool_calls");
  if (auto v = get_string(b, "truncation"); v && *v != "disabled" && *v != "auto")
    bad_request("truncation", "'truncation' must be disabled or auto, found '{}'", *v);
  if (auto it = b.find("chat_template_kwargs"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.chat_template_kwargs = nlohmann::ordered_json::parse(it->dump());
  }
  try {
    s.validate();
  } catch (const EngineError& e) {
    bad_request(e.field, "{}", e.what());
  }
  return r;
}

}  // namespace dsserve::server
