// POST /v1/chat/completions: OpenAI's chat API. Messages are rendered with the chat template and
// tokenized; n choices become n engine requests (rid-suffixed); the output goes through the
// deepseek-r1 reasoning parser (--reasoning-parser, reasoning_content) and the deepseekv3 tool-call
// parser (--tool-call-parser, when tools are offered), streamed as chat.completion.chunk events
// or returned as one chat.completion. Structured output (response_format, SGLang's regex / ebnf /
// json_schema, forced tool calls) constrains every choice: server/structured_output.h.
#include <chrono>
#include <optional>

#include "server/api_error.h"
#include "server/conversation.h"
#include "server/job_group.h"
#include "server/request_parsing.h"
#include "server/response_builders.h"
#include "server/routes.h"
#include "server/sse.h"
#include "text/reasoning_parser.h"
#include "text/tool_call_parser.h"

namespace dsserve::server {

namespace {

struct ChoiceStream {
  bool role_sent = false;
  bool saw_tool_call = false;
  std::optional<text::ReasoningStreamParser> reasoning;
  std::optional<text::ToolCallStreamParser> tools;
};

struct ChatState {
  explicit ChatState(std::shared_ptr<Responder> r) : group(std::move(r)) {}
  JobGroup group;
  ChatRequest req;
  std::string id, model, fingerprint;
  int64_t created = 0;
  bool use_reasoning = false, use_tools = false;
  std::vector<std::string> tool_names;
  text::ToolCallFormat tool_format = text::ToolCallFormat::DeepseekV3;
  std::vector<ChoiceStream> choices;
};

ojson chunk_base(const ChatState& st) {
  return ojson{{"id", st.id},       {"object", "chat.completion.chunk"}, {"created", st.created},
               {"model", st.model}, {"system_fingerprint", st.fingerprint}};
}

ojson tool_calls_json(const std::vector<text::ToolCall>& calls, bool streaming) {
  ojson a = ojson::array();
  for (auto& c : calls) {
    ojson fn = ojson::object();
    if (!c.name.empty() || !streaming) fn["name"] = c.name;
    fn["arguments"] = c.arguments;
    ojson call = {{"index", c.index}};
    if (!c.id.empty() || !streaming) call["id"] = c.id;
    if (!c.name.empty() || !streaming) call["type"] = "function";
    call["function"] = fn;
    a.push_back(call);
  }
  return a;
}

void send_delta(ChatState& st, size_t i, ojson delta, const ojson& logprobs = nullptr) {
  ojson choice = {{"index", i}, {"delta", std::move(delta)}, {"logprobs", logprobs}, {"finish_reason", nullptr}};
  ojson chunk = chunk_base(st);
  chunk["choices"] = ojson::array({choice});
  st.group.responder->stream(sse_event(chunk));
}

// Routes new text of choice i through the reasoning and tool-call parsers into delta chunks.
void stream_text(ChatState& st, size_t i, const std::string& new_text, bool at_end, const ojson& logprobs) {
  ChoiceStream& cs = st.choices[i];
  std::string reasoning, content;
  if (cs.reasoning) {
    text::ReasoningResult r = cs.reasoning->push(new_text);
    reasoning = std::move(r.reasoning);
    content = std::move(r.content);
    if (at_end) {
      text::ReasoningResult f = cs.reasoning->finish();
      reasoning += f.reasoning;
      content += f.content;
    }
  } else {
    content = new_text;
  }
  std::vector<text::ToolCall> calls;
  if (cs.tools) {
    text::ToolCallDelta d = cs.tools->push(content);
    content = std::move(d.content);
    calls = std::move(d.calls);
    if (at_end) {
      text::ToolCallDelta f = cs.tools->finish();
      content += f.content;
      calls.insert(calls.end(), f.calls.begin(), f.calls.end());
    }
  }
  if (!reasoning.empty()) send_delta(st, i, ojson{{"reasoning_content", reasoning}});
  if (!calls.empty()) cs.saw_tool_call = true;
  if (!content.empty() || !calls.empty() || !logprobs.is_null()) {
    ojson delta = ojson::object();
    if (!content.empty() || calls.empty()) delta["content"] = content;
    if (!calls.empty()) delta["tool_calls"] = tool_calls_json(calls, true);
    send_delta(st, i, std::move(delta), logprobs);
  }
}

std::string finish_reason_of(const GenerationJob& job, bool saw_tool_call) {
  std::string r = job.openai_finish_reason().get<std::string>();
  if (saw_tool_call && r == "stop") return "tool_calls";
  return r;
}

void on_stream_event(ChatState& st, size_t i, GenerationJob& job, const std::string& new_text, size_t first_new,
                     ServerContext& ctx) {
  ChoiceStream& cs = st.choices[i];
  if (!cs.role_sent) {
    cs.role_sent = true;
    send_delta(st, i, ojson{{"role", "assistant"}, {"content", ""}});
  }
  ojson lp = nullptr;
  if (st.req.logprobs && job.output_ids.size() > first_new)
    lp = chat_logprobs(ctx, job, first_new, job.output_ids.size(), st.req.top_logprobs);
  if (!new_text.empty() || job.finished() || !lp.is_null()) stream_text(st, i, new_text, job.finished(), lp);
  if (job.finished()) {
    ojson choice = {{"index", i},
                    {"delta", ojson::object()},
                    {"logprobs", nullptr},
                    {"finish_reason", finish_reason_of(job, cs.saw_tool_call)},
                    {"matched_stop", job.matched_stop()}};
    ojson chunk = chunk_base(st);
    chunk["choices"] = ojson::array({choice});
    if (st.req.common.continuous_usage_stats) chunk["usage"] = usage_json({&job}, 1);
    st.group.responder->stream(sse_event(chunk));
  }
  if (st.group.all_finished()) {
    if (st.req.common.include_usage) {
      ojson chunk = chunk_base(st);
      chunk["choices"] = ojson::array();
      chunk["usage"] = usage_json(st.group.views(), st.req.common.n);
      st.group.responder->stream(sse_event(chunk));
    }
    st.group.responder->stream(sse_done());
    st.group.responder->end_stream();
  }
}

void send_completion(ChatState& st, ServerContext& ctx) {
  ojson choices = ojson::array();
  for (size_t i = 0; i < st.group.jobs.size(); ++i) {
    const GenerationJob& job = *st.group.jobs[i];
    std::string content = job.text;
    ojson message = {{"role", "assistant"}};
    ojson reasoning = nullptr;
    if (st.use_reasoning) {
      text::ReasoningResult r = text::parse_reasoning(content);
      reasoning = r.reasoning;
      content = std::move(r.content);
    }
    ojson tool_calls = nullptr;
    bool saw_tool_call = false;
    if (st.use_tools) {
      text::ToolCallResult r = text::parse_tool_calls(content, st.tool_names, text::random_tool_call_id, st.tool_format);
      if (!r.calls.empty()) {
        saw_tool_call = true;
        tool_calls = tool_calls_json(r.calls, false);
        content = std::move(r.content);
      }
    }
    message["content"] = saw_tool_call && content.empty() ? ojson(nullptr) : ojson(content);
    message["reasoning_content"] = reasoning;
    if (!tool_calls.is_null()) message["tool_calls"] = tool_calls;  // absent, never null, as OpenAI
    ojson choice = {{"index", i},
                    {"message", message},
                    {"logprobs", st.req.logprobs ? chat_logprobs(ctx, job, 0, job.output_ids.size(), st.req.top_logprobs)
                                                 : ojson(nullptr)},
                    {"finish_reason", finish_reason_of(job, saw_tool_call)},
                    {"matched_stop", job.matched_stop()}};
    choices.push_back(std::move(choice));
  }
  ojson out = {{"id", st.id},
               {"object", "chat.completion"},
               {"created", st.created},
               {"model", st.model},
               {"system_fingerprint", st.fingerprint},
               {"choices", choices},
               {"usage", usage_json(st.group.views(), st.req.common.n)}};
  st.group.responder->send(json_response(json_text(out)));
}

void handle_chat(ServerContext& ctx, const Request& http, std::shared_ptr<Responder> responder) {
  require_chat_template(ctx, "chat completions");
  json body = parse_json_body(http.body);
  auto st = std::make_shared<ChatState>(responder);
  st->req = parse_chat_request(body);
  ChatRequest& req = st->req;
  check_sequence_count(ctx, req.common.n, "n", fmt::format("n {}", req.common.n));
  st->id = req.common.rid.empty() ? ctx.new_id("chatcmpl-") : req.common.rid;
  st->model = ctx.settings.served_model_name;
  st->fingerprint = ctx.settings.system_fingerprint;
  st->created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  bool thinking = false;  // DeepSeek-V3.1's switch (chat_template_kwargs {"thinking": true})
  if (req.chat_template_kwargs.is_object())
    if (auto t = req.chat_template_kwargs.find("thinking"); t != req.chat_template_kwargs.end())
      thinking = t->is_boolean() && t->get<bool>();
  st->use_reasoning = text::reasoning_applies(ctx.settings.reasoning_parser, thinking) && req.separate_reasoning;
  // Forced tool calls are parsed whatever --tool-call-parser says: their grammar wrote that (V3) format.
  const bool forced_tools = req.tool_choice == "required" || req.tool_choice == "function";
  st->use_tools = (!ctx.settings.tool_call_parser.empty() || forced_tools) && req.tools.is_array() && req.tool_choice != "none";
  if (st->use_tools && !forced_tools) st->tool_format = text::tool_call_format(ctx.settings.tool_call_parser);
  if (req.tools.is_array())
    for (auto& t : req.tools) st->tool_names.push_back(t["function"]["name"].get<std::string>());

  ConversationOptions conv;
  conv.tools = req.tool_choice != "none" ? req.tools : nlohmann::ordered_json(nullptr);
  conv.chat_template_kwargs = req.chat_template_kwargs;
  conv.continue_final_message = req.continue_final_message;
  std::vector<int32_t> ids = tokenize_conversation(ctx, req.messages, conv);
  bool has_max_completion = body.contains("max_completion_tokens") && !body["max_completion_tokens"].is_null();
  int max_new = fit_context(ids, req.common.max_tokens, ctx.engine.context_length(), ctx.settings.allow_auto_truncate,
                            "messages", has_max_completion ? "max_completion_tokens" : "max_tokens");

  std::shared_ptr<const grammar::CompiledGrammar> grammar;
  if (req.common.structured) grammar = compile_structured_output(ctx, *req.common.structured);
  for (int i = 0; i < req.common.n; ++i) {
    GenerationRequest g;
    if (grammar) g.constraint = make_constraint(grammar, st->use_reasoning);  // one matcher per choice
    g.rid = req.common.n > 1 ? fmt::format("{}-{}", st->id, i) : st->id;
    g.input_ids = ids;
    g.sampling = req.common.sampling;
    g.sampling.max_new_tokens = max_new;
    if (g.sampling.seed && i > 0) *g.sampling.seed += uint64_t(i);  // n choices from one seed still differ
    g.return_logprob = req.logprobs;
    g.top_logprobs_num = req.logprobs ? req.top_logprobs : 0;
    st->group.add(std::make_shared<GenerationJob>(ctx, responder, std::move(g), req.common.text));
    ChoiceStream cs;
    if (st->use_reasoning) cs.reasoning.emplace(req.stream_reasoning);
    if (st->use_tools) cs.tools.emplace(st->tool_names, text::random_tool_call_id, st->tool_format);
    st->choices.push_back(std::move(cs));
  }
  ServerContext* c = &ctx;
  st->group.start_answer(
      req.common.stream,
      [st, c](size_t i, GenerationJob& job, const std::string& t, size_t first) {
        on_stream_event(*st, i, job, t, first, *c);
      },
      [st, c] { send_completion(*st, *c); });
}

}  // namespace

void add_chat_routes(Router& router, ServerContext& ctx) {
  ServerContext* c = &ctx;
  router.add("POST", "/v1/chat/completions", [c](const Request& r, std::shared_ptr<Responder> resp) {
    handle_chat(*c, r, std::move(resp));
  });
}

}  // namespace dsserve::server
