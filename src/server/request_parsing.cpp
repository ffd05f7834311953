// Parsing and validation of /generate, /v1/chat/completions and /v1/completions bodies
// (see request_parsing.h).
#include "server/request_parsing.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "runtime/engine_error.h"
#include "server/api_error.h"

namespace dsserve::server {

namespace {

// OpenAI fields both routes know, plus SGLang's extra sampling fields.
const std::set<std::string> kCommonFields = {
    "model", "frequency_penalty", "logit_bias", "max_tokens", "n", "presence_penalty", "seed", "stop", "stream",
    "stream_options", "temperature", "top_p", "user", "metadata", "store", "service_tier",
    // SGLang extensions
    "top_k", "min_p", "min_tokens", "repetition_penalty", "ignore_eos", "skip_special_tokens", "no_stop_trim",
    "stop_token_ids", "spaces_between_special_tokens", "regex", "ebnf", "json_schema", "lora_path", "rid",
    "sampling_seed", "session_params", "return_hidden_states", "custom_logit_processor", "custom_params",
    "priority", "bootstrap_host", "bootstrap_port", "bootstrap_room"};

const std::set<std::string> kChatOnlyFields = {
    "messages", "logprobs", "top_logprobs", "max_completion_tokens", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "reasoning_effort", "modalities", "prompt_cache_key", "safety_identifier",
    "separate_reasoning", "stream_reasoning", "chat_template_kwargs", "continue_final_message", "verbosity"};

const std::set<std::string> kCompletionOnlyFields = {"prompt", "echo", "logprobs", "best_of", "suffix"};

// SamplingParams::validate as a 400 naming the field.
void validate_sampling(const SamplingParams& s, const std::string& prefix) {
  try {
    s.validate(0, prefix);
  } catch (const EngineError& e) {
    bad_request(e.field, "{}", e.what());
  }
}

void reject_if_set(const json& body, const std::string& key, const std::string& why) {
  auto it = body.find(key);
  if (it != body.end() && !it->is_null()) bad_request(key, "'{}' is not supported: {}", key, why);
}

void parse_logit_bias(const json& body, const std::string& key, SamplingParams& s) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return;
  if (!it->is_object()) bad_request(key, "'{}' must be an object mapping token ids to biases", key);
  for (auto e = it->begin(); e != it->end(); ++e) {
    int32_t id = 0;
    try {
      size_t used = 0;
      long v = std::stol(e.key(), &used);
      if (used != e.key().size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("");
      id = int32_t(v);
    } catch (...) {
      bad_request(key, "'{}': key '{}' is not a token id", key, e.key());
    }
    if (!e.value().is_number()) bad_request(key, "'{}': bias of token {} must be a number", key, id);
    s.logit_bias.emplace_back(id, float(e.value().get<double>()));
  }
}

// Sampling fields shared by chat and completions.
void parse_openai_sampling(const json& b, OpenAISampling& o) {
  o.model = get_string(b, "model").value_or("");
  SamplingParams& s = o.sampling;
  // Types here; ranges in SamplingParams::validate (below), OpenAI's temperature cap of 2 aside.
  if (auto v = get_number(b, "temperature")) { check_range(*v, 0, 2, "temperature"); s.temperature = float(*v); }
  if (auto v = get_number(b, "top_p")) s.top_p = float(*v);
  if (auto v = get_integer(b, "top_k")) s.top_k = *v == 0 ? -1 : int(std::clamp<int64_t>(*v, INT32_MIN, INT32_MAX));
  if (auto v = get_number(b, "min_p")) s.min_p = float(*v);
  if (auto v = get_number(b, "frequency_penalty")) s.frequency_penalty = float(*v);
  if (auto v = get_number(b, "presence_penalty")) s.presence_penalty = float(*v);
  if (auto v = get_number(b, "repetition_penalty")) s.repetition_penalty = float(*v);
  if (auto v = get_integer(b, "seed")) s.seed = uint64_t(*v);
  else if (auto v2 = get_integer(b, "sampling_seed")) s.seed = uint64_t(*v2);
  if (auto v = get_integer(b, "min_tokens")) {
    if (*v < 0) bad_request("min_tokens", "'min_tokens' must be non-negative, found {}", *v);
    s.min_new_tokens = int(std::min<int64_t>(*v, INT32_MAX));
  }
  s.stop_token_ids = get_int_list(b, "stop_token_ids");
  s.ignore_eos = get_bool(b, "ignore_eos").value_or(false);
  parse_logit_bias(b, "logit_bias", s);
  o.text.stop = get_string_or_list(b, "stop");
  for (auto& st : o.text.stop)
    if (st.empty()) bad_request("stop", "'stop' strings must not be empty");
  o.text.no_stop_trim = get_bool(b, "no_stop_trim").value_or(false);
  o.text.skip_special_tokens = get_bool(b, "skip_special_tokens").value_or(true);
  o.text.spaces_between_special_tokens = get_bool(b, "spaces_between_special_tokens").value_or(true);
  if (auto v = get_integer(b, "max_tokens")) {
    if (*v < 0) bad_request("max_tokens", "'max_tokens' must be non-negative, found {}", *v);
    o.max_tokens = *v;
  }
  if (auto v = get_integer(b, "n")) {
    if (*v < 1 || *v > 128) bad_request("n", "'n' must be between 1 and 128, found {}", *v);
    o.n = int(*v);
  }
  o.stream = get_bool(b, "stream").value_or(false);
  if (auto it = b.find("stream_options"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("stream_options", "'stream_options' must be an object");
    reject_unknown_fields(*it, {"include_usage", "continuous_usage_stats", "include_obfuscation"}, "stream_options.");
    if (!o.stream) bad_request("stream_options", "'stream_options' is only allowed when 'stream' is true");
    o.include_usage = get_bool(*it, "include_usage", "stream_options.").value_or(false);
    o.continuous_usage_stats = get_bool(*it, "continuous_usage_stats", "stream_options.").value_or(false);
  }
  o.rid = get_string(b, "rid").value_or("");
  get_string(b, "user");
  o.structured = parse_sglang_constraint(b, "");
  reject_if_set(b, "lora_path", "LoRA adapters are not supported");
  reject_if_set(b, "custom_logit_processor", "custom logit processors are not supported");
  if (get_bool(b, "return_hidden_states").value_or(false))
    bad_request("return_hidden_states", "'return_hidden_states' is not supported");
  validate_sampling(s, "");
}

// Message content as a string: a string, null, or a list of {type: text, text} parts.
json flatten_content(const json& content, const std::string& param) {
  if (content.is_null() || content.is_string()) return content;
  if (!content.is_array()) bad_request(param, "'{}' must be a string or a list of content parts", param);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    std::string p = fmt::format("{}[{}]", param, i);
    if (!part.is_object()) bad_request(p, "'{}' must be an object", p);
    std::string type = get_string(part, "type", p + ".").value_or("");
    if (type == "text") {
      auto t = get_string(part, "text", p + ".");
      if (!t) bad_request(p + ".text", "'{}.text' is required", p);
      text += *t;
    } else if (type == "image_url" || type == "input_audio" || type == "file" || type == "video_url") {
      bad_request(p + ".type", "content parts of type '{}' are not supported: this is a text-only model", type);
    } else {
      bad_request(p + ".type", "unknown content part type '{}'", type);
    }
  }
  return text;
}

nlohmann::ordered_json parse_messages(const json& b) {
  auto it = b.find("messages");
  if (it == b.end() || it->is_null()) bad_request("messages", "'messages' is required");
  if (!it->is_array()) bad_request("messages", "'messages' must be a list, found {}", json_type_name(*it));
  if (it->empty()) bad_request("messages", "'messages' must contain at least one message");
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool"};
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    std::string p = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad_request(p, "'{}' must be an object", p);
    auto role = get_string(m, "role", p + ".");
    if (!role) bad_request(p + ".role", "'{}.role' is required", p);
    if (!roles.count(*role)) bad_request(p + ".role", "'{}.role' must be one of system, developer, user, assistant, tool; found '{}'", p, *role);
    nlohmann::ordered_json msg = nlohmann::ordered_json::object();
    msg["role"] = *role == "developer" ? "system" : *role;
    json content = m.contains("content") ? flatten_content(m["content"], p + ".content") : json(nullptr);
    if (content.is_null() && *role != "assistant") bad_request(p + ".content", "'{}.content' is required", p);
    msg["content"] = content;
    if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
      if (*role != "assistant") bad_request(p + ".tool_calls", "only assistant messages carry tool_calls");
      if (!tc->is_array()) bad_request(p + ".tool_calls", "'{}.tool_calls' must be a list", p);
      nlohmann::ordered_json calls = nlohmann::ordered_json::array();
      for (size_t k = 0; k < tc->size(); ++k) {
        const json& c = (*tc)[k];
        std::string cp = fmt::format("{}.tool_calls[{}]", p, k);
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
          bad_request(cp, "'{}' must be an object with a 'function'", cp);
        nlohmann::ordered_json call = {{"id", get_string(c, "id", cp + ".").value_or("")},
                                       {"type", get_string(c, "type", cp + ".").value_or("function")}};
        auto name = get_string(c["function"], "name", cp + ".function.");
        if (!name) bad_request(cp + ".function.name", "'{}.function.name' is required", cp);
        const json& args = c["function"].contains("arguments") ? c["function"]["arguments"] : json("{}");
        call["function"] = {{"name", *name}, {"arguments", args.is_string() ? args.get<std::string>() : args.dump()}};
        calls.push_back(call);
      }
      msg["tool_calls"] = calls;
    } else if (content.is_null()) {
      bad_request(p + ".content", "'{}.content' is required unless the message has tool_calls", p);
    }
    if (auto v = get_string(m, "tool_call_id", p + ".")) msg["tool_call_id"] = *v;
    if (auto v = get_string(m, "name", p + ".")) msg["name"] = *v;
    if (auto v = get_string(m, "reasoning_content", p + ".")) msg["reasoning_content"] = *v;
    out.push_back(std::move(msg));
  }
  return out;
}

void parse_tools(const json& b, ChatRequest& r) {
  if (auto it = b.find("tools"); it != b.end() && !it->is_null()) {
    if (!it->is_array()) bad_request("tools", "'tools' must be a list");
    r.tools = nlohmann::ordered_json::array();
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      std::string p = fmt::format("tools[{}]", i);
      if (!t.is_object()) bad_request(p, "'{}' must be an object", p);
      if (get_string(t, "type", p + ".").value_or("function") != "function")
        bad_request(p + ".type", "only tools of type 'function' are supported");
      if (!t.contains("function") || !t["function"].is_object()) bad_request(p + ".function", "'{}.function' is required", p);
      if (!get_string(t["function"], "name", p + ".function.")) bad_request(p + ".function.name", "'{}.function.name' is required", p);
      r.tools.push_back(nlohmann::ordered_json::parse(t.dump()));
    }
    if (r.tools.empty()) r.tools = nullptr;
  }
  if (auto it = b.find("tool_choice"); it != b.end() && !it->is_null()) {
    if (it->is_string()) {
      r.tool_choice = it->get<std::string>();
      if (r.tool_choice != "none" && r.tool_choice != "auto" && r.tool_choice != "required")
        bad_request("tool_choice", "'tool_choice' must be none, auto, required or a function, found '{}'", r.tool_choice);
    } else if (it->is_object()) {
      if (!it->contains("function") || !(*it)["function"].is_object() || !get_string((*it)["function"], "name", "tool_choice.function."))
        bad_request("tool_choice", "'tool_choice' object must name a function: {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
      r.tool_choice = "function";
      r.tool_choice_function = (*it)["function"]["name"].get<std::string>();
      bool found = false;
      if (r.tools.is_array())
        for (auto& t : r.tools) found |= t["function"]["name"] == r.tool_choice_function;
      if (!found) bad_request("tool_choice", "tool_choice names function '{}', which is not in 'tools'", r.tool_choice_function);
    } else {
      bad_request("tool_choice", "'tool_choice' must be a string or an object");
    }
    if (r.tool_choice != "none" && !r.tools.is_array())
      bad_request("tool_choice", "'tool_choice' is only allowed when 'tools' are given");
  }
  if (!r.tools.is_array()) r.tool_choice = "none";
}

}  // namespace

ChatRequest parse_chat_request(const json& b) {
  std::set<std::string> known = kCommonFields;
  known.insert(kChatOnlyFields.begin(), kChatOnlyFields.end());
  reject_unknown_fields(b, known);
  ChatRequest r;
  r.messages = parse_messages(b);
  parse_openai_sampling(b, r.common);
  if (auto v = get_integer(b, "max_completion_tokens")) {
    if (*v < 0) bad_request("max_completion_tokens", "'max_completion_tokens' must be non-negative, found {}", *v);
    r.common.max_tokens = *v;
  }
  r.logprobs = get_bool(b, "logprobs").value_or(false);
  if (auto v = get_integer(b, "top_logprobs")) {
    if (*v < 0 || *v > 20) bad_request("top_logprobs", "'top_logprobs' must be between 0 and 20, found {}", *v);
    if (!r.logprobs && *v > 0) bad_request("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
    r.top_logprobs = int(*v);
  }
  if (auto it = b.find("response_format"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("response_format", "'response_format' must be an object");
    get_string(*it, "type", "response_format.");
    if (auto so = parse_response_format(*it)) set_structured_output(r.common.structured, std::move(*so));
  }
  parse_tools(b, r);
  const bool parallel = get_bool(b, "parallel_tool_calls").value_or(true);
  if (r.tool_choice == "required" || r.tool_choice == "function")
    set_structured_output(r.common.structured, tool_call_output(r.tools, r.tool_choice_function, parallel));
  r.separate_reasoning = get_bool(b, "separate_reasoning").value_or(true);
  r.stream_reasoning = get_bool(b, "stream_reasoning").value_or(true);
  r.continue_final_message = get_bool(b, "continue_final_message").value_or(false);
  if (auto it = b.find("chat_template_kwargs"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.chat_template_kwargs = nlohmann::ordered_json::parse(it->dump());
  }
  if (auto v = get_string(b, "reasoning_effort"); v && *v != "low" && *v != "medium" && *v != "high" && *v != "minimal")
    bad_request("reasoning_effort", "'reasoning_effort' must be minimal, low, medium or high");
  return r;
}

CompletionRequest parse_completion_request(const json& b) {
  std::set<std::string> known = kCommonFields;
  known.insert(kCompletionOnlyFields.begin(), kCompletionOnlyFields.end());
  reject_unknown_fields(b, known);
  CompletionRequest r;
  auto it = b.find("prompt");
  if (it == b.end() || it->is_null()) bad_request("prompt", "'prompt' is required");
  const json& p = *it;
  auto ids_of = [](const json& a, const std::string& param) {
    std::vector<int32_t> ids;
    for (auto& e : a) {
      if (!e.is_number_integer()) bad_request(param, "'{}' must hold only token ids (integers)", param);
      int64_t x = e.get<int64_t>();
      if (x < 0 || x > INT32_MAX) bad_request(param, "'{}': token id {} is out of range", param, x);
      ids.push_back(int32_t(x));
    }
    return ids;
  };
  if (p.is_string()) {
    r.prompt_texts.push_back(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    r.prompt_ids.push_back(ids_of(p, "prompt"));
  } else if (p.is_array() && !p.empty() && p[0].is_string()) {
    for (auto& e : p) {
      if (!e.is_string()) bad_request("prompt", "'prompt' must be a string, a list of strings, or token ids");
      r.prompt_texts.push_back(e.get<std::string>());
    }
  } else if (p.is_array() && !p.empty() && p[0].is_array()) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (!p[i].is_array()) bad_request("prompt", "'prompt' must be a list of token-id lists");
      r.prompt_ids.push_back(ids_of(p[i], fmt::format("prompt[{}]", i)));
    }
  } else {
    bad_request("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists");
  }
  parse_openai_sampling(b, r.common);
  if (!r.common.max_tokens) r.common.max_tokens = 16;  // OpenAI's default for completions
  r.echo = get_bool(b, "echo").value_or(false);
  if (auto v = get_integer(b, "logprobs")) {
    if (*v < 0 || *v > 5) bad_request("logprobs", "'logprobs' must be between 0 and 5, found {}", *v);
    r.logprobs = int(*v);
  }
  if (auto v = get_integer(b, "best_of"); v && *v != r.common.n)
    bad_request("best_of", "'best_of' other than n is not supported");
  if (auto v = get_string(b, "suffix"); v && !v->empty()) bad_request("suffix", "'suffix' is not supported");
  return r;
}

void parse_native_sampling(const json& sp, const std::string& param, SamplingParams& s, TextOptions& text,
                           bool& max_new_tokens_given) {
  if (sp.is_null()) return;
  if (!sp.is_object()) bad_request(param, "'{}' must be an object", param);
  static const std::set<std::string> known = {
      "max_new_tokens", "min_new_tokens", "stop", "stop_token_ids", "temperature", "top_p", "top_k", "min_p",
      "frequency_penalty", "presence_penalty", "repetition_penalty", "ignore_eos", "skip_special_tokens",
      "spaces_between_special_tokens", "no_stop_trim", "n", "json_schema", "regex", "ebnf", "structural_tag",
      "custom_params", "logit_bias", "sampling_seed", "stream_interval"};
  std::string pre = param + ".";
  reject_unknown_fields(sp, known, pre);
  if (auto v = get_integer(sp, "max_new_tokens", pre)) {
    s.max_new_tokens = int(std::clamp<int64_t>(*v, -1, INT32_MAX));
    max_new_tokens_given = true;
  }
  if (auto v = get_integer(sp, "min_new_tokens", pre)) s.min_new_tokens = int(std::clamp<int64_t>(*v, -1, INT32_MAX));
  // Types here; ranges in SamplingParams::validate (below).
  if (auto v = get_number(sp, "temperature", pre)) s.temperature = float(*v);
  if (auto v = get_number(sp, "top_p", pre)) s.top_p = float(*v);
  if (auto v = get_integer(sp, "top_k", pre)) s.top_k = *v == 0 ? -1 : int(std::clamp<int64_t>(*v, INT32_MIN, INT32_MAX));
  if (auto v = get_number(sp, "min_p", pre)) s.min_p = float(*v);
  if (auto v = get_number(sp, "frequency_penalty", pre)) s.frequency_penalty = float(*v);
  if (auto v = get_number(sp, "presence_penalty", pre)) s.presence_penalty = float(*v);
  if (auto v = get_number(sp, "repetition_penalty", pre)) s.repetition_penalty = float(*v);
  s.stop_token_ids = get_int_list(sp, "stop_token_ids", pre);
  s.ignore_eos = get_bool(sp, "ignore_eos", pre).value_or(false);
  if (auto v = get_integer(sp, "sampling_seed", pre)) s.seed = uint64_t(*v);
  parse_logit_bias(sp, "logit_bias", s);
  text.stop = get_string_or_list(sp, "stop", pre);
  for (auto& st : text.stop)
    if (st.empty()) bad_request(pre + "stop", "'{}stop' strings must not be empty", pre);
  text.skip_special_tokens = get_bool(sp, "skip_special_tokens", pre).value_or(true);
  text.spaces_between_special_tokens = get_bool(sp, "spaces_between_special_tokens", pre).value_or(true);
  text.no_stop_trim = get_bool(sp, "no_stop_trim", pre).value_or(false);
  if (auto v = get_integer(sp, "n", pre); v && *v != 1)
    bad_request(pre + "n", "'{}n' other than 1 is not supported on /generate: send a batch instead", pre);
  validate_sampling(s, pre);
}

NativeGenerateRequest parse_generate_request(const json& b, int default_max_new_tokens) {
  reject_unknown_fields(b, {"text", "input_ids", "sampling_params", "return_logprob", "logprob_start_len",
                            "top_logprobs_num", "token_ids_logprob", "return_text_in_logprobs", "stream", "rid",
                            "modalities", "lora_path", "session_params", "custom_logit_processor",
                            "return_hidden_states", "bootstrap_host", "bootstrap_port", "bootstrap_room",
                            "log_metrics", "priority", "image_data", "audio_data", "video_data", "input_embeds"});
  for (const char* k : {"image_data", "audio_data", "video_data", "input_embeds"})
    reject_if_set(b, k, "this is a text-only server: send text or input_ids");
  reject_if_set(b, "lora_path", "LoRA adapters are not supported");
  NativeGenerateRequest r;
  r.stream = get_bool(b, "stream").value_or(false);
  bool has_text = b.contains("text") && !b["text"].is_null();
  bool has_ids = b.contains("input_ids") && !b["input_ids"].is_null();
  if (has_text == has_ids) bad_request(has_text ? "input_ids" : "text", "send exactly one of 'text' and 'input_ids'");
  std::vector<NativeItem> items;
  if (has_text) {
    const json& t = b["text"];
    if (t.is_string()) {
      items.emplace_back().text = t.get<std::string>();
    } else if (t.is_array()) {
      r.batch = true;
      for (auto& e : t) {
        if (!e.is_string()) bad_request("text", "'text' must be a string or a list of strings");
        items.emplace_back().text = e.get<std::string>();
      }
    } else {
      bad_request("text", "'text' must be a string or a list of strings, found {}", json_type_name(t));
    }
  } else {
    const json& ids = b["input_ids"];
    if (!ids.is_array()) bad_request("input_ids", "'input_ids' must be a list of token ids or a list of lists");
    auto parse_ids = [](const json& a, const std::string& param) {
      std::vector<int32_t> out;
      for (auto& e : a) {
        if (!e.is_number_integer()) bad_request(param, "'{}' must hold only integers", param);
        int64_t x = e.get<int64_t>();
        if (x < 0 || x > INT32_MAX) bad_request(param, "'{}': token id {} is out of range", param, x);
        out.push_back(int32_t(x));
      }
      return out;
    };
    if (!ids.empty() && ids[0].is_array()) {
      r.batch = true;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!ids[i].is_array()) bad_request("input_ids", "'input_ids' mixes lists and integers");
        items.emplace_back().input_ids = parse_ids(ids[i], fmt::format("input_ids[{}]", i));
      }
    } else {
      items.emplace_back().input_ids = parse_ids(ids, "input_ids");
    }
  }
  if (items.empty()) bad_request(has_text ? "text" : "input_ids", "the batch is empty");
  auto per_item = [&](const char* key, auto&& apply) {
    auto it = b.find(key);
    if (it == b.end() || it->is_null()) return;
    if (it->is_array() && std::string(key) != "stop") {
      if (!r.batch || it->size() != items.size())
        bad_request(key, "'{}' as a list needs one entry per prompt ({} prompts, {} entries)", key, items.size(), it->size());
      for (size_t i = 0; i < items.size(); ++i) apply(items[i], (*it)[i], fmt::format("{}[{}]", key, i));
    } else {
      for (auto& item : items) apply(item, *it, std::string(key));
    }
  };
  for (auto& item : items) item.sampling.max_new_tokens = default_max_new_tokens;
  per_item("sampling_params", [](NativeItem& item, const json& v, const std::string& p) {
    parse_native_sampling(v, p, item.sampling, item.text_options, item.max_new_tokens_given);
    if (v.is_object()) item.structured = parse_sglang_constraint(v, p + ".");
  });
  auto as_bool = [](const json& v, const std::string& p) {
    if (!v.is_boolean()) bad_request(p, "'{}' must be a boolean", p);
    return v.get<bool>();
  };
  auto as_int = [](const json& v, const std::string& p) {
    if (!v.is_number_integer()) bad_request(p, "'{}' must be an integer", p);
    return int(std::clamp<int64_t>(v.get<int64_t>(), INT32_MIN, INT32_MAX));
  };
  per_item("return_logprob", [&](NativeItem& item, const json& v, const std::string& p) { item.return_logprob = as_bool(v, p); });
  per_item("logprob_start_len", [&](NativeItem& item, const json& v, const std::string& p) {
    item.logprob_start_len = as_int(v, p);
    if (item.logprob_start_len < -1) bad_request(p, "'{}' must be -1 or a prompt position", p);
  });
  per_item("top_logprobs_num", [&](NativeItem& item, const json& v, const std::string& p) {
    item.top_logprobs_num = as_int(v, p);
    if (item.top_logprobs_num < 0 || item.top_logprobs_num > 20) bad_request(p, "'{}' must be between 0 and 20", p);
  });
  per_item("return_text_in_logprobs", [&](NativeItem& item, const json& v, const std::string& p) {
    item.return_text_in_logprobs = as_bool(v, p);
  });
  if (r.batch && b.contains("rid") && b["rid"].is_string())
    bad_request("rid", "'rid' of a batch must be a list of one distinct id per prompt ({} prompts)", items.size());
  per_item("rid", [&](NativeItem& item, const json& v, const std::string& p) {
    if (!v.is_string()) bad_request(p, "'{}' must be a string", p);
    item.rid = v.get<std::string>();
  });
  r.items = std::move(items);
  return r;
}

int check_context(size_t prompt_tokens, std::optional<int64_t> max_new_tokens, int64_t context_length,
                  const std::string& prompt_param, const std::string& max_tokens_param) {
  if (prompt_tokens == 0) bad_request(prompt_param, "the prompt is empty");
  if (int64_t(prompt_tokens) >= context_length)
    throw ApiError(400,
                   fmt::format("The input ({} tokens) is longer than the model's context length ({} tokens).",
                               prompt_tokens, context_length),
                   "invalid_request_error", prompt_param, std::string("context_length_exceeded"));
  int64_t left = context_length - int64_t(prompt_tokens);
  if (!max_new_tokens) return int(std::min<int64_t>(left, INT32_MAX));
  if (*max_new_tokens > left)
    throw ApiError(400,
                   fmt::format("Requested token count exceeds the model's maximum context length of {} tokens. You "
                               "requested a total of {} tokens: {} tokens from the input messages and {} tokens for "
                               "the completion. Please reduce the number of tokens in the input messages or the "
                               "completion to fit within the limit.",
                               context_length, int64_t(prompt_tokens) + *max_new_tokens, prompt_tokens, *max_new_tokens),
                   "invalid_request_error", max_tokens_param, std::string("context_length_exceeded"));
  return int(*max_new_tokens);
}

int fit_context(std::vector<int32_t>& ids, std::optional<int64_t> max_new_tokens, int64_t context_length,
                bool truncate, const std::string& prompt_param, const std::string& max_tokens_param) {
  if (truncate && !ids.empty()) {
    if (int64_t(ids.size()) >= context_length) ids.resize(size_t(std::max<int64_t>(context_length - 1, 1)));
    if (max_new_tokens) max_new_tokens = std::min<int64_t>(*max_new_tokens, context_length - int64_t(ids.size()));
  }
  return check_context(ids.size(), max_new_tokens, context_length, prompt_param, max_tokens_param);
}

}  // namespace dsserve::server
