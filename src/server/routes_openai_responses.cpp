// POST /v1/responses: OpenAI's Responses API for text. The conversation (instructions, then input)
// is rendered with the chat template like a chat completion and runs as one engine request; the
// answer is a `response` object whose output holds a `message` item (and, with a reasoning parser,
// a `reasoning` item before it), or, streaming, the typed events OpenAI sends (response.created,
// output_item.added, output_text.delta, ..., response.completed), each with its sequence_number.
#include <chrono>
#include <random>

#include "server/api_error.h"
#include "server/conversation.h"
#include "server/job_group.h"
#include "server/response_builders.h"
#include "server/request_parsing.h"
#include "server/responses_request.h"
#include "server/routes.h"
#include "server/sse.h"
#include "text/reasoning_parser.h"

namespace dsserve::server {

namespace {

std::string random_hex(size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kHex[rng() % 16];
  return s;
}

struct ResponsesState {
  explicit ResponsesState(std::shared_ptr<Responder> r) : group(std::move(r)) {}
  JobGroup group;
  ResponsesRequest req;
  std::string id, model, message_id, reasoning_id;
  int64_t created = 0;
  bool use_reasoning = false;
  // Streaming: what has been opened and sent.
  int64_t sequence = 0;
  std::optional<text::ReasoningStreamParser> reasoning_parser;
  std::string reasoning_text, content_text;
  int reasoning_index = -1, message_index = -1, next_output_index = 0;
  bool reasoning_open = false, message_open = false;
};

ojson message_item(const ResponsesState& st, const std::string& text, const std::string& status) {
  ojson content = ojson::array();
  if (status != "in_progress")
    content.push_back({{"type", "output_text"}, {"text", text}, {"annotations", ojson::array()}, {"logprobs", ojson::array()}});
  return {{"id", st.message_id}, {"type", "message"}, {"status", status}, {"role", "assistant"}, {"content", content}};
}

ojson reasoning_item(const ResponsesState& st, const std::string& text, const std::string& status) {
  ojson content = ojson::array();
  if (status != "in_progress") content.push_back({{"type", "reasoning_text"}, {"text", text}});
  return {{"id", st.reasoning_id}, {"type", "reasoning"}, {"summary", ojson::array()}, {"content", content},
          {"status", status}};
}

// The response object; job null while it is in progress.
ojson response_json(const ResponsesState& st, const GenerationJob* job) {
  ojson output = ojson::array();
  std::string status = "in_progress";
  ojson incomplete = nullptr, error = nullptr, usage = nullptr;
  if (job) {
    if (job->finish.type == "length") {
      status = "incomplete";
      incomplete = {{"reason", "max_output_tokens"}};
    } else if (job->finish.type == "abort") {
      status = "failed";
      error = {{"code", "server_error"}, {"message", job->finish.message}};
    } else {
      status = "completed";
    }
    if (!st.reasoning_text.empty()) output.push_back(reasoning_item(st, st.reasoning_text, "completed"));
    output.push_back(message_item(st, st.content_text, status == "completed" ? "completed" : "incomplete"));
    const int64_t in = job->prompt_tokens, out = job->completion_tokens();
    usage = {{"input_tokens", in},
             {"input_tokens_details", {{"cached_tokens", job->cached_tokens}}},
             {"output_tokens", out},
             {"output_tokens_details", {{"reasoning_tokens", 0}}},
             {"total_tokens", in + out}};
  }
  const ResponsesRequest& r = st.req;
  return {{"id", st.id},
          {"object", "response"},
          {"created_at", st.created},
          {"status", status},
          {"error", error},
          {"incomplete_details", incomplete},
          {"instructions", r.instructions ? ojson(*r.instructions) : ojson(nullptr)},
          {"max_output_tokens", r.max_output_tokens ? ojson(*r.max_output_tokens) : ojson(nullptr)},
          {"model", st.model},
          {"output", output},
          {"parallel_tool_calls", true},
          {"previous_response_id", nullptr},
          {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
          {"store", false},
          {"temperature", r.temperature},
          {"text", {{"format", {{"type", "text"}}}}},
          {"tool_choice", "auto"},
          {"tools", ojson::array()},
          {"top_p", r.top_p},
          {"truncation", "disabled"},
          {"usage", usage},
          {"user", r.user ? ojson(*r.user) : ojson(nullptr)},
          {"metadata", r.metadata}};
}

// One typed event: `event: TYPE` and `data: {type, sequence_number, ...}`.
void send_event(ResponsesState& st, const std::string& type, ojson fields) {
  ojson e = {{"type", type}, {"sequence_number", st.sequence++}};
  for (auto& [k, v] : fields.items()) e[k] = v;
  st.group.responder->stream("event: " + type + "\ndata: " + json_text(e) + "\n\n");
}

void open_reasoning(ResponsesState& st) {
  st.reasoning_index = st.next_output_index++;
  st.reasoning_open = true;
  send_event(st, "response.output_item.added",
             {{"output_index", st.reasoning_index}, {"item", reasoning_item(st, "", "in_progress")}});
  send_event(st, "response.content_part.added", {{"item_id", st.reasoning_id}, {"output_index", st.reasoning_index},
                                                 {"content_index", 0}, {"part", {{"type", "reasoning_text"}, {"text", ""}}}});
}

void close_reasoning(ResponsesState& st) {
  if (!st.reasoning_open) return;
  st.reasoning_open = false;
  send_event(st, "response.reasoning_text.done", {{"item_id", st.reasoning_id}, {"output_index", st.reasoning_index},
                                                  {"content_index", 0}, {"text", st.reasoning_text}});
  send_event(st, "response.content_part.done",
             {{"item_id", st.reasoning_id}, {"output_index", st.reasoning_index}, {"content_index", 0},
              {"part", {{"type", "reasoning_text"}, {"text", st.reasoning_text}}}});
  send_event(st, "response.output_item.done",
             {{"output_index", st.reasoning_index}, {"item", reasoning_item(st, st.reasoning_text, "completed")}});
}

void open_message(ResponsesState& st) {
  close_reasoning(st);
  st.message_index = st.next_output_index++;
  st.message_open = true;
  send_event(st, "response.output_item.added",
             {{"output_index", st.message_index}, {"item", message_item(st, "", "in_progress")}});
  send_event(st, "response.content_part.added",
             {{"item_id", st.message_id}, {"output_index", st.message_index}, {"content_index", 0},
              {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", ojson::array()}}}});
}

void on_stream_event(ResponsesState& st, GenerationJob& job, const std::string& new_text) {
  std::string reasoning, content = new_text;
  if (st.reasoning_parser) {
    text::ReasoningResult r = st.reasoning_parser->push(new_text);
    if (job.finished()) {
      text::ReasoningResult f = st.reasoning_parser->finish();
      r.reasoning += f.reasoning;
      r.content += f.content;
    }
    reasoning = std::move(r.reasoning);
    content = std::move(r.content);
  }
  if (!reasoning.empty()) {
    if (!st.reasoning_open && st.message_index < 0) open_reasoning(st);
    st.reasoning_text += reasoning;
    send_event(st, "response.reasoning_text.delta", {{"item_id", st.reasoning_id}, {"output_index", st.reasoning_index},
                                                     {"content_index", 0}, {"delta", reasoning}});
  }
  if (!content.empty()) {
    if (!st.message_open) open_message(st);
    st.content_text += content;
    send_event(st, "response.output_text.delta", {{"item_id", st.message_id}, {"output_index", st.message_index},
                                                  {"content_index", 0}, {"delta", content}, {"logprobs", ojson::array()}});
  }
  if (!job.finished()) return;
  if (!st.message_open) open_message(st);
  const ojson done_item = response_json(st, &job)["output"].back();
  send_event(st, "response.output_text.done", {{"item_id", st.message_id}, {"output_index", st.message_index},
                                               {"content_index", 0}, {"text", st.content_text}, {"logprobs", ojson::array()}});
  send_event(st, "response.content_part.done",
             {{"item_id", st.message_id}, {"output_index", st.message_index}, {"content_index", 0},
              {"part", {{"type", "output_text"}, {"text", st.content_text}, {"annotations", ojson::array()}}}});
  send_event(st, "response.output_item.done", {{"output_index", st.message_index}, {"item", done_item}});
  const ojson final_response = response_json(st, &job);
  const std::string status = final_response["status"].get<std::string>();
  send_event(st, status == "completed" ? "response.completed" : status == "incomplete" ? "response.incomplete"
                                                                                      : "response.failed",
             {{"response", final_response}});
  st.group.responder->end_stream();
}

void handle_responses(ServerContext& ctx, const Request& http, std::shared_ptr<Responder> responder) {
  require_chat_template(ctx, "/v1/responses");
  json body = parse_json_body(http.body);
  auto st = std::make_shared<ResponsesState>(responder);
  st->req = parse_responses_request(body);
  ResponsesRequest& req = st->req;
  st->id = req.rid.empty() ? "resp_" + random_hex(32) : req.rid;
  st->message_id = "msg_" + random_hex(32);
  st->reasoning_id = "rs_" + random_hex(32);
  st->model = ctx.settings.served_model_name;
  st->created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  bool thinking = false;
  if (req.chat_template_kwargs.is_object())
    if (auto t = req.chat_template_kwargs.find("thinking"); t != req.chat_template_kwargs.end())
      thinking = t->is_boolean() && t->get<bool>();
  st->use_reasoning = text::reasoning_applies(ctx.settings.reasoning_parser, thinking);
  ConversationOptions conv;
  conv.chat_template_kwargs = req.chat_template_kwargs;
  std::vector<int32_t> ids = tokenize_conversation(ctx, req.messages, conv, "input");
  int max_new = fit_context(ids, req.max_output_tokens, ctx.engine.context_length(), ctx.settings.allow_auto_truncate,
                            "input", "max_output_tokens");
  GenerationRequest g;
  g.rid = st->id;
  g.input_ids = std::move(ids);
  g.sampling = req.sampling;
  g.sampling.max_new_tokens = max_new;
  st->group.add(std::make_shared<GenerationJob>(ctx, responder, std::move(g), req.text));
  if (req.stream) {
    if (st->use_reasoning) st->reasoning_parser.emplace(true);
    st->group.start([st](size_t, GenerationJob& job, const std::string& t, size_t) { on_stream_event(*st, job, t); });
    responder->start_stream();
    send_event(*st, "response.created", {{"response", response_json(*st, nullptr)}});
    send_event(*st, "response.in_progress", {{"response", response_json(*st, nullptr)}});
  } else {
    st->group.start([st](size_t, GenerationJob& job, const std::string&, size_t) {
      if (!job.finished()) return;
      if (st->use_reasoning) {
        text::ReasoningResult r = text::parse_reasoning(job.text);
        st->reasoning_text = std::move(r.reasoning);
        st->content_text = std::move(r.content);
      } else {
        st->content_text = job.text;
      }
      st->group.responder->send(json_response(json_text(response_json(*st, &job))));
    });
  }
}

}  // namespace

void add_responses_routes(Router& router, ServerContext& ctx) {
  ServerContext* c = &ctx;
  router.add("POST", "/v1/responses", [c](const Request& r, std::shared_ptr<Responder> resp) {
    handle_responses(*c, r, std::move(resp));
  });
}

}  // namespace dsserve::server
