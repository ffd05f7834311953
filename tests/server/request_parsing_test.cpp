// Request parsing and validation of the generation routes: accepted shapes, and the 400s (with the
// offending parameter) for wrong types, ranges, unknown and unsupported fields, and the context.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/request_parsing.h"

using namespace dsserve::server;
using nlohmann::json;

namespace {

// The param of the ApiError that f throws (fails the test when nothing is thrown).
template <typename F>
std::string param_of_error(F f, int expected_status = 400) {
  try {
    f();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, expected_status) << e.what();
    return e.param.value_or("<none>");
  }
  ADD_FAILURE() << "no ApiError thrown";
  return "";
}

json chat(json extra = json::object()) {
  json b = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  b.update(extra);
  return b;
}

}  // namespace

TEST(ChatRequest, AcceptsOpenAIAndSGLangFields) {
  ChatRequest r = parse_chat_request(chat({{"temperature", 0.5}, {"top_p", 0.9}, {"max_completion_tokens", 7},
                                           {"stop", "x"}, {"n", 2}, {"seed", 3}, {"top_k", 5}, {"min_p", 0.1},
                                           {"repetition_penalty", 1.2}, {"ignore_eos", true},
                                           {"skip_special_tokens", false}, {"separate_reasoning", false},
                                           {"stream_reasoning", false}, {"stream", true},
                                           {"stream_options", {{"include_usage", true}}},
                                           {"logprobs", true}, {"top_logprobs", 2}}));
  EXPECT_FLOAT_EQ(r.common.sampling.temperature, 0.5f);
  EXPECT_EQ(*r.common.max_tokens, 7);
  EXPECT_EQ(r.common.text.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.common.n, 2);
  EXPECT_EQ(*r.common.sampling.seed, 3u);
  EXPECT_EQ(r.common.sampling.top_k, 5);
  EXPECT_TRUE(r.common.sampling.ignore_eos);
  EXPECT_FALSE(r.common.text.skip_special_tokens);
  EXPECT_FALSE(r.separate_reasoning);
  EXPECT_FALSE(r.stream_reasoning);
  EXPECT_TRUE(r.common.include_usage);
  EXPECT_EQ(r.top_logprobs, 2);
  EXPECT_EQ(r.tool_choice, "none");  // no tools
}

TEST(ChatRequest, FlattensContentPartsAndKeepsToolCalls) {
  json b = chat();
  b["messages"] = {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
                   {{"role", "assistant"}, {"content", nullptr},
                    {"tool_calls", {{{"id", "c1"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", {{"x", 1}}}}}}}}},
                   {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "42"}}};
  ChatRequest r = parse_chat_request(b);
  EXPECT_EQ(r.messages[0]["content"], "ab");
  EXPECT_EQ(r.messages[1]["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
  EXPECT_EQ(r.messages[2]["tool_call_id"], "c1");
}

TEST(ChatRequest, ToolsAndToolChoice) {
  json tools = {{{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", json::object()}}}}};
  ChatRequest r = parse_chat_request(chat({{"tools", tools}}));
  EXPECT_EQ(r.tool_choice, "auto");
  r = parse_chat_request(chat({{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}));
  EXPECT_EQ(r.tool_choice, "function");
  EXPECT_EQ(r.tool_choice_function, "get_weather");
  EXPECT_EQ(param_of_error([&] { parse_chat_request(chat({{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}})); }), "tool_choice");
  EXPECT_EQ(param_of_error([&] { parse_chat_request(chat({{"tool_choice", "required"}})); }), "tool_choice");
  EXPECT_EQ(param_of_error([&] { parse_chat_request(chat({{"tools", {{{"type", "code"}}}}})); }), "tools[0].type");
  // A type or id of the wrong JSON type is a 400 naming it (found by fuzz_json_request: it escaped
  // as the JSON library's own exception).
  EXPECT_EQ(param_of_error([&] {
              parse_chat_request(chat({{"tools", {{{"type", {{"x", 1}}}, {"function", {{"name", "f"}}}}}}}));
            }),
            "tools[0].type");
  auto with_call = [](json call) {
    return json{{"messages", {{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", {call}}}}}};
  };
  const json fn = {{"name", "f"}, {"arguments", "{}"}};
  EXPECT_EQ(param_of_error([&] { parse_chat_request(with_call({{"id", 5}, {"function", fn}})); }),
            "messages[0].tool_calls[0].id");
  EXPECT_EQ(param_of_error([&] { parse_chat_request(with_call({{"type", json::object()}, {"function", fn}})); }),
            "messages[0].tool_calls[0].type");
}

TEST(ChatRequest, RejectsBadInputNamingTheParameter) {
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"temperature", 2.5}})); }), "temperature");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"temperature", "hot"}})); }), "temperature");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"top_p", 0}})); }), "top_p");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"n", 0}})); }), "n");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"max_tokens", -1}})); }), "max_tokens");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"presence_penalty", 3}})); }), "presence_penalty");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"top_logprobs", 3}})); }), "top_logprobs");  // needs logprobs
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"frobnicate", 1}})); }), "frobnicate");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"stream_options", {{"include_usage", true}}}})); }), "stream_options");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"regex", 5}})); }), "regex");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"response_format", {{"type", "structural_tag"}}}})); }), "response_format.type");
  EXPECT_EQ(param_of_error([] { parse_chat_request(chat({{"logit_bias", {{"abc", 1}}}})); }), "logit_bias");
  EXPECT_EQ(param_of_error([] { parse_chat_request(json{{"messages", json::array()}}); }), "messages");
  EXPECT_EQ(param_of_error([] { parse_chat_request(json{{"messages", {{{"role", "bot"}, {"content", "x"}}}}}); }), "messages[0].role");
  EXPECT_EQ(param_of_error([] {
              parse_chat_request(json{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}});
            }),
            "messages[0].content[0].type");
}

TEST(CompletionRequest, PromptForms) {
  CompletionRequest a = parse_completion_request({{"prompt", "hi"}});
  EXPECT_EQ(a.prompt_texts.size(), 1u);
  EXPECT_EQ(*a.common.max_tokens, 16);  // OpenAI's default
  CompletionRequest b = parse_completion_request({{"prompt", {1, 2, 3}}, {"echo", true}, {"logprobs", 2}});
  EXPECT_EQ(b.prompt_ids, (std::vector<std::vector<int32_t>>{{1, 2, 3}}));
  EXPECT_TRUE(b.echo);
  EXPECT_EQ(*b.logprobs, 2);
  CompletionRequest c = parse_completion_request({{"prompt", {"a", "b"}}});
  EXPECT_EQ(c.prompt_texts.size(), 2u);
  CompletionRequest d = parse_completion_request({{"prompt", {{1}, {2, 3}}}});
  EXPECT_EQ(d.prompt_ids.size(), 2u);
  EXPECT_EQ(param_of_error([] { parse_completion_request({{"prompt", 5}}); }), "prompt");
  EXPECT_EQ(param_of_error([] { parse_completion_request(json::object()); }), "prompt");
  EXPECT_EQ(param_of_error([] { parse_completion_request({{"prompt", "x"}, {"logprobs", 6}}); }), "logprobs");
  EXPECT_EQ(param_of_error([] { parse_completion_request({{"prompt", "x"}, {"suffix", "y"}}); }), "suffix");
}

TEST(GenerateRequest, SingleBatchAndPerItemFields) {
  NativeGenerateRequest a = parse_generate_request({{"text", "hi"}, {"sampling_params", {{"max_new_tokens", 5}, {"stop", {"a", "b"}}}}}, 128);
  ASSERT_EQ(a.items.size(), 1u);
  EXPECT_FALSE(a.batch);
  EXPECT_EQ(a.items[0].sampling.max_new_tokens, 5);
  EXPECT_EQ(a.items[0].text_options.stop.size(), 2u);
  NativeGenerateRequest b = parse_generate_request(
      {{"input_ids", {{1, 2}, {3}}}, {"sampling_params", {{{"max_new_tokens", 1}}, {{"max_new_tokens", 2}}}},
       {"return_logprob", {true, false}}, {"stream", true}},
      128);
  ASSERT_EQ(b.items.size(), 2u);
  EXPECT_TRUE(b.batch);
  EXPECT_TRUE(b.stream);
  EXPECT_EQ(b.items[1].sampling.max_new_tokens, 2);
  EXPECT_TRUE(b.items[0].return_logprob);
  EXPECT_FALSE(b.items[1].return_logprob);
  NativeGenerateRequest c = parse_generate_request({{"text", "x"}}, 128);
  EXPECT_EQ(c.items[0].sampling.max_new_tokens, 128);
  EXPECT_FALSE(c.items[0].max_new_tokens_given);
}

TEST(GenerateRequest, RejectsBadInput) {
  EXPECT_EQ(param_of_error([] { parse_generate_request(json::object(), 128); }), "text");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"text", "a"}, {"input_ids", {1}}}, 128); }), "input_ids");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"text", 3}}, 128); }), "text");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"input_ids", {1, "x"}}}, 128); }), "input_ids");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"text", "a"}, {"sampling_params", {{"temperature", -1}}}}, 128); }),
            "sampling_params.temperature");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"text", "a"}, {"sampling_params", {{"bogus", 1}}}}, 128); }),
            "sampling_params.bogus");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"text", {"a", "b"}}, {"sampling_params", {json::object()}}}, 128); }),
            "sampling_params");
  EXPECT_EQ(param_of_error([] { parse_generate_request({{"text", "a"}, {"extra", 1}}, 128); }), "extra");
}

TEST(CheckContext, LimitsPromptAndMaxTokens) {
  EXPECT_EQ(check_context(10, 5, 100, "p", "m"), 5);
  EXPECT_EQ(check_context(10, std::nullopt, 100, "p", "m"), 90);
  EXPECT_EQ(check_context(10, 90, 100, "p", "m"), 90);
  EXPECT_EQ(param_of_error([] { check_context(10, 91, 100, "p", "m"); }), "m");
  EXPECT_EQ(param_of_error([] { check_context(100, 1, 100, "p", "m"); }), "p");
  EXPECT_EQ(param_of_error([] { check_context(0, 1, 100, "p", "m"); }), "p");
}

TEST(JsonBody, MalformedAndNonObject) {
  EXPECT_EQ(param_of_error([] { parse_json_body("{\"a\": "); }), "<none>");
  EXPECT_EQ(param_of_error([] { parse_json_body("[1]"); }), "<none>");
  EXPECT_TRUE(parse_json_body("{\"a\": 1}").is_object());
}
