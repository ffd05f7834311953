// Request bodies of the three generation routes parsed into typed requests, with validation: types,
// ranges, unknown fields (OpenAI routes reject them as OpenAI does), unsupported features (images,
// LoRA) named in the 400 message; structured output fields become StructuredOutput. Tokenizing and the context-length check come after,
// in the routes, via check_context().
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "runtime/request.h"
#include "server/generation_job.h"
#include "server/json_fields.h"
#include "server/structured_output.h"

namespace dsserve::server {

// Fields shared by chat and completions that become SamplingParams and TextOptions.
struct OpenAISampling {
  SamplingParams sampling;
  TextOptions text;
  std::optional<int64_t> max_tokens;  // null: the rest of the context (chat) or 16 (completions)
  int n = 1;
  bool stream = false;
  bool include_usage = false;       // stream_options.include_usage
  bool continuous_usage_stats = false;
  std::string model;
  std::string rid;
  std::optional<StructuredOutput> structured;  // regex / ebnf / json_schema, response_format, forced tool calls
};

struct ChatRequest {
  OpenAISampling common;
  nlohmann::ordered_json messages;  // content flattened to strings; tool_calls arguments as strings
  nlohmann::ordered_json tools;     // null or the list of {type: function, function: {...}}
  std::string tool_choice = "auto"; // none | auto | required | function
  std::string tool_choice_function;
  bool logprobs = false;
  int top_logprobs = 0;
  bool separate_reasoning = true;
  bool stream_reasoning = true;
  bool continue_final_message = false;
  nlohmann::ordered_json chat_template_kwargs;  // object or null
};

struct CompletionRequest {
  OpenAISampling common;
  std::vector<std::string> prompt_texts;          // one of these two is filled
  std::vector<std::vector<int32_t>> prompt_ids;
  bool echo = false;
  std::optional<int> logprobs;                    // 0..5 top alternatives per token
};

ChatRequest parse_chat_request(const json& body);
CompletionRequest parse_completion_request(const json& body);

// One item of a /generate request (a batch has several).
struct NativeItem {
  std::optional<std::string> text;
  std::vector<int32_t> input_ids;
  SamplingParams sampling;
  TextOptions text_options;
  bool max_new_tokens_given = false;
  bool return_logprob = false;
  int logprob_start_len = -1;
  int top_logprobs_num = 0;
  bool return_text_in_logprobs = false;
  std::string rid;
  std::optional<StructuredOutput> structured;  // sampling_params json_schema / regex / ebnf
};

struct NativeGenerateRequest {
  bool batch = false;
  bool stream = false;
  std::vector<NativeItem> items;
};

// SGLang's /generate: text or input_ids (single or batch), sampling_params (object or list),
// return_logprob (bool or list), logprob_start_len, top_logprobs_num, stream, rid.
NativeGenerateRequest parse_generate_request(const json& body, int default_max_new_tokens);
// SGLang's sampling_params object, `param` naming it in errors.
void parse_native_sampling(const json& sp, const std::string& param, SamplingParams& out, TextOptions& text,
                           bool& max_new_tokens_given);

// 400 when prompt_tokens + max_new_tokens cannot fit the context (naming `prompt_param` or
// `max_tokens_param`); returns max_new_tokens, or what is left of the context when it is absent.
int check_context(size_t prompt_tokens, std::optional<int64_t> max_new_tokens, int64_t context_length,
                  const std::string& prompt_param, const std::string& max_tokens_param);
// check_context, or with --allow-auto-truncate (truncate) as SGLang: a prompt as long as the
// context loses its end (one position is left to generate in) and max_new_tokens is cut to what
// is left.
int fit_context(std::vector<int32_t>& ids, std::optional<int64_t> max_new_tokens, int64_t context_length,
                bool truncate, const std::string& prompt_param, const std::string& max_tokens_param);

}  // namespace dsserve::server
