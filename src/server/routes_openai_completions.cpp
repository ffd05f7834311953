// POST /v1/completions: OpenAI's legacy completions API. A prompt is a string, token ids, or a list
// of either; each prompt gets n engine requests (choice index = prompt * n + k). echo prepends the
// prompt (and its logprobs); integer logprobs gives that many alternatives per token.
#include <chrono>

#include "server/api_error.h"
#include "server/job_group.h"
#include "server/request_parsing.h"
#include "server/response_builders.h"
#include "server/routes.h"
#include "server/sse.h"

namespace dsserve::server {

namespace {

struct CompletionState {
  explicit CompletionState(std::shared_ptr<Responder> r) : group(std::move(r)) {}
  JobGroup group;
  CompletionRequest req;
  std::string id, model, fingerprint;
  int64_t created = 0;
  std::vector<std::string> echo_text;  // per job: the prompt text when echo
  std::vector<size_t> unshown;         // per job: leading prompt tokens absent from the echo (a BOS added to text)
  std::vector<size_t> text_sent;       // per job: characters already streamed (logprob offsets)
  std::vector<bool> echo_sent;
};

ojson base(const CompletionState& st) {
  return ojson{{"id", st.id},       {"object", "text_completion"}, {"created", st.created},
               {"model", st.model}, {"system_fingerprint", st.fingerprint}};
}

void on_stream_event(CompletionState& st, size_t i, GenerationJob& job, const std::string& new_text,
                     size_t first_new, ServerContext& ctx) {
  std::string text = new_text;
  bool with_prompt = false;
  if (st.req.echo && !st.echo_sent[i]) {
    st.echo_sent[i] = true;
    text = st.echo_text[i] + text;
    with_prompt = true;
  }
  ojson lp = nullptr;
  if (st.req.logprobs && (job.output_ids.size() > first_new || with_prompt))
    lp = completion_logprobs(ctx, job, first_new, job.output_ids.size(), with_prompt, st.text_sent[i], st.unshown[i]);
  st.text_sent[i] += text.size();
  if (!text.empty() || !lp.is_null() || job.finished()) {
    ojson choice = {{"index", i}, {"text", text}, {"logprobs", lp}, {"finish_reason", job.openai_finish_reason()}};
    if (job.finished()) choice["matched_stop"] = job.matched_stop();
    ojson chunk = base(st);
    chunk["choices"] = ojson::array({choice});
    if (job.finished() && st.req.common.continuous_usage_stats) chunk["usage"] = usage_json({&job}, 1);
    st.group.responder->stream(sse_event(chunk));
  }
  if (st.group.all_finished()) {
    if (st.req.common.include_usage) {
      ojson chunk = base(st);
      chunk["choices"] = ojson::array();
      chunk["usage"] = usage_json(st.group.views(), st.req.common.n);
      st.group.responder->stream(sse_event(chunk));
    }
    st.group.responder->stream(sse_done());
    st.group.responder->end_stream();
  }
}

void send_completion(CompletionState& st, ServerContext& ctx) {
  ojson choices = ojson::array();
  for (size_t i = 0; i < st.group.jobs.size(); ++i) {
    const GenerationJob& job = *st.group.jobs[i];
    ojson choice = {{"index", i},
                    {"text", (st.req.echo ? st.echo_text[i] : std::string()) + job.text},
                    {"logprobs", st.req.logprobs ? completion_logprobs(ctx, job, 0, job.output_ids.size(), st.req.echo,
                                                                       0, st.unshown[i])
                                                 : ojson(nullptr)},
                    {"finish_reason", job.openai_finish_reason()},
                    {"matched_stop", job.matched_stop()}};
    choices.push_back(std::move(choice));
  }
  ojson out = base(st);
  out["choices"] = choices;
  out["usage"] = usage_json(st.group.views(), st.req.common.n);
  st.group.responder->send(json_response(json_text(out)));
}

void handle_completions(ServerContext& ctx, const Request& http, std::shared_ptr<Responder> responder) {
  json body = parse_json_body(http.body);
  auto st = std::make_shared<CompletionState>(responder);
  st->req = parse_completion_request(body);
  CompletionRequest& req = st->req;
  const size_t n_prompts = req.prompt_texts.size() + req.prompt_ids.size();
  check_sequence_count(ctx, int64_t(n_prompts) * req.common.n, req.common.n > 1 ? "n" : "prompt",
                       fmt::format("{} prompts x n {}", n_prompts, req.common.n));
  st->id = req.common.rid.empty() ? ctx.new_id("cmpl-") : req.common.rid;
  st->model = ctx.settings.served_model_name;
  st->fingerprint = ctx.settings.system_fingerprint;
  st->created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (!ctx.tokenizer && !req.prompt_texts.empty())
    bad_request("prompt", "the server runs with --skip-tokenizer-init: send token ids instead of text");
  if (!ctx.tokenizer && !req.common.text.stop.empty())
    bad_request("stop", "stop strings need the tokenizer (the server runs with --skip-tokenizer-init)");

  std::vector<std::vector<int32_t>> prompts = req.prompt_ids;
  std::vector<std::string> prompt_texts = req.prompt_texts;
  for (size_t p = 0; p < req.prompt_texts.size(); ++p) {
    try {
      prompts.push_back(ctx.tokenizer->encode(req.prompt_texts[p], /*add_special_tokens=*/true));
    } catch (const std::exception& e) {
      bad_request("prompt", "cannot tokenize prompt {}: {}", p, e.what());
    }
  }
  if (prompt_texts.empty())
    for (auto& ids : prompts) prompt_texts.push_back(ctx.tokenizer && req.echo ? ctx.tokenizer->decode(ids) : "");
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
  if (req.common.structured) grammar = compile_structured_output(ctx, *req.common.structured);
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::string param = prompts.size() > 1 ? fmt::format("prompt[{}]", p) : "prompt";
    int max_new = fit_context(prompts[p], req.common.max_tokens, ctx.engine.context_length(),
                              ctx.settings.allow_auto_truncate, param, "max_tokens");
    for (int32_t id : prompts[p])
      if (id >= ctx.engine.vocab_size())
        bad_request(param, "token id {} is outside the vocabulary (size {})", id, ctx.engine.vocab_size());
    for (int k = 0; k < req.common.n; ++k) {
      size_t index = p * size_t(req.common.n) + size_t(k);
      GenerationRequest g;
      if (grammar) g.constraint = make_constraint(grammar, false);
      g.rid = prompts.size() * size_t(req.common.n) > 1 ? fmt::format("{}-{}", st->id, index) : st->id;
      g.input_ids = prompts[p];
      g.sampling = req.common.sampling;
      g.sampling.max_new_tokens = max_new;
      if (g.sampling.seed && k > 0) *g.sampling.seed += uint64_t(k);
      g.return_logprob = req.logprobs.has_value();
      g.logprob_start_len = req.logprobs && req.echo ? 0 : -1;
      g.top_logprobs_num = req.logprobs.value_or(0);
      st->group.add(std::make_shared<GenerationJob>(ctx, responder, std::move(g), req.common.text));
      st->echo_text.push_back(req.echo ? prompt_texts[p] : "");
      // A text prompt's text lacks the BOS that tokenizing added: that token takes no room in it.
      const bool added_bos = p >= req.prompt_ids.size() && ctx.tokenizer && ctx.tokenizer->bos_id >= 0 &&
                             !prompts[p].empty() && prompts[p][0] == ctx.tokenizer->bos_id &&
                             req.prompt_texts[p - req.prompt_ids.size()].rfind(ctx.tokenizer->bos_token, 0) != 0;
      st->unshown.push_back(added_bos ? 1 : 0);
    }
  }
  st->text_sent.assign(st->group.jobs.size(), 0);
  st->echo_sent.assign(st->group.jobs.size(), false);
  ServerContext* c = &ctx;
  st->group.start_answer(
      req.common.stream,
      [st, c](size_t i, GenerationJob& job, const std::string& t, size_t first) {
        on_stream_event(*st, i, job, t, first, *c);
      },
      [st, c] { send_completion(*st, *c); });
}

}  // namespace

void add_completion_routes(Router& router, ServerContext& ctx) {
  ServerContext* c = &ctx;
  router.add("POST", "/v1/completions", [c](const Request& r, std::shared_ptr<Responder> resp) {
    handle_completions(*c, r, std::move(resp));
  });
}

}  // namespace dsserve::server
