// SGLang's native routes: POST /generate (text or input_ids, single or batch, streaming or not, with
// meta_info and logprobs), POST /flush_cache, GET /get_model_info, GET /get_server_info.
#include <chrono>

#include "server/api_error.h"
#include "server/job_group.h"
#include "server/request_parsing.h"
#include "server/response_builders.h"
#include "server/routes.h"
#include "server/sse.h"

namespace dsserve::server {

HttpResponse json_response(std::string body, int status) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

namespace {

struct GenerateState {
  explicit GenerateState(std::shared_ptr<Responder> r) : group(std::move(r)) {}
  JobGroup group;
  std::vector<NativeItem> items;
  bool batch = false;
};

ojson item_json(const ServerContext& ctx, const GenerationJob& job, const NativeItem& item) {
  ojson meta = {{"id", job.rid()},
                {"finish_reason", job.finish_reason_json()},
                {"prompt_tokens", job.prompt_tokens},
                {"completion_tokens", job.completion_tokens()},
                {"cached_tokens", job.cached_tokens},
                {"spec_verify_ct", job.spec_verify_ct}};
  if (job.finished()) meta["e2e_latency"] = job.e2e_latency_s;
  if (item.return_logprob) {
    const ServerContext* c = &ctx;
    bool t = item.return_text_in_logprobs;
    meta["input_token_logprobs"] = native_token_logprobs(c, job.input_token_logprobs, t);
    meta["output_token_logprobs"] = native_token_logprobs(c, job.output_token_logprobs, t);
    if (item.top_logprobs_num > 0) {
      meta["input_top_logprobs"] = native_top_logprobs(c, job.input_top_logprobs, t);
      meta["output_top_logprobs"] = native_top_logprobs(c, job.output_top_logprobs, t);
    }
  }
  ojson out = ojson::object();
  if (ctx.tokenizer) out["text"] = job.text;
  out["output_ids"] = job.output_ids;
  out["meta_info"] = std::move(meta);
  return out;
}

void handle_generate(ServerContext& ctx, const Request& http, std::shared_ptr<Responder> responder) {
  json body = parse_json_body(http.body);
  NativeGenerateRequest req = parse_generate_request(body, ctx.settings.default_max_new_tokens);
  check_sequence_count(ctx, int64_t(req.items.size()), req.items[0].text ? "text" : "input_ids",
                       fmt::format("a batch of {}", req.items.size()));
  auto st = std::make_shared<GenerateState>(responder);
  st->batch = req.batch;
  std::string base = ctx.new_id("");
  for (size_t i = 0; i < req.items.size(); ++i) {
    NativeItem& item = req.items[i];
    std::string param = req.batch ? fmt::format("{}[{}]", item.text ? "text" : "input_ids", i)
                                  : std::string(item.text ? "text" : "input_ids");
    if (item.text) {
      if (!ctx.tokenizer)
        bad_request("text", "the server runs with --skip-tokenizer-init: send input_ids instead of text");
      try {
        item.input_ids = ctx.tokenizer->encode(*item.text, /*add_special_tokens=*/true);
      } catch (const std::exception& e) {
        bad_request(param, "cannot tokenize: {}", e.what());
      }
    }
    if (!ctx.tokenizer && !item.text_options.stop.empty())
      bad_request("sampling_params.stop", "stop strings need the tokenizer (the server runs with --skip-tokenizer-init)");
    std::optional<int64_t> max_new;
    if (item.max_new_tokens_given) max_new = item.sampling.max_new_tokens;
    int limit = fit_context(item.input_ids, max_new, ctx.engine.context_length(), ctx.settings.allow_auto_truncate,
                            param, "sampling_params.max_new_tokens");
    if (!item.max_new_tokens_given) limit = std::min(limit, item.sampling.max_new_tokens);
    for (int32_t id : item.input_ids)
      if (id >= ctx.engine.vocab_size())
        bad_request(param, "token id {} is outside the vocabulary (size {})", id, ctx.engine.vocab_size());
    GenerationRequest g;
    if (item.structured) g.constraint = make_constraint(compile_structured_output(ctx, *item.structured), false);
    g.rid = !item.rid.empty() ? item.rid : (req.batch ? fmt::format("{}-{}", base, i) : base);
    g.input_ids = item.input_ids;
    g.sampling = item.sampling;
    g.sampling.max_new_tokens = limit;
    g.return_logprob = item.return_logprob;
    g.logprob_start_len = item.return_logprob ? item.logprob_start_len : -1;
    g.top_logprobs_num = item.return_logprob ? item.top_logprobs_num : 0;
    st->group.add(std::make_shared<GenerationJob>(ctx, responder, std::move(g), item.text_options));
  }
  st->items = std::move(req.items);
  ServerContext* c = &ctx;
  st->group.start_answer(
      req.stream,
      [st, c](size_t i, GenerationJob& job, const std::string&, size_t) {
        ojson chunk = item_json(*c, job, st->items[i]);
        if (st->batch) chunk["index"] = i;
        st->group.responder->stream(sse_event(chunk));
        if (st->group.all_finished()) {
          st->group.responder->stream(sse_done());
          st->group.responder->end_stream();
        }
      },
      [st, c] {
        ojson out;
        if (st->batch) {
          out = ojson::array();
          for (size_t k = 0; k < st->group.jobs.size(); ++k)
            out.push_back(item_json(*c, *st->group.jobs[k], st->items[k]));
        } else {
          out = item_json(*c, *st->group.jobs[0], st->items[0]);
        }
        st->group.responder->send(json_response(json_text(out)));
      });
}

}  // namespace

void add_native_routes(Router& router, ServerContext& ctx) {
  ServerContext* c = &ctx;
  router.add("POST", "/generate", [c](const Request& r, std::shared_ptr<Responder> resp) {
    handle_generate(*c, r, std::move(resp));
  });
  auto flush = [c](const Request&, std::shared_ptr<Responder> resp) {
    c->engine.flush_cache();
    HttpResponse r;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "Cache flushed.\n";
    resp->send(std::move(r));
  };
  router.add("POST", "/flush_cache", flush);
  router.add("GET", "/flush_cache", flush);
  router.add("GET", "/get_model_info", [c](const Request&, std::shared_ptr<Responder> resp) {
    ojson info = {{"model_path", c->settings.model_path},
                  {"tokenizer_path", c->tokenizer ? ojson(c->settings.tokenizer_path) : ojson(nullptr)},
                  {"is_generation", true},
                  {"preferred_sampling_params", nullptr},
                  {"weight_version", "default"},
                  {"has_chat_template", c->chat_template != nullptr},
                  {"context_length", c->engine.context_length()},
                  {"vocab_size", c->engine.vocab_size()}};
    resp->send(json_response(json_text(info)));
  });
  router.add("GET", "/get_server_info", [c](const Request&, std::shared_ptr<Responder> resp) {
    EngineStats s = c->engine.stats();
    nlohmann::json info = c->server_args;
    info["internal_states"] = nlohmann::json::array({{{"num_running_reqs", s.running_requests},
                                                      {"num_queue_reqs", s.queued_requests},
                                                      {"kv_pages_total", s.kv_pages_total},
                                                      {"kv_pages_used", s.kv_pages_used},
                                                      {"page_size", s.page_size},
                                                      {"prompt_tokens_total", s.prompt_tokens_total},
                                                      {"generation_tokens_total", s.generation_tokens_total},
                                                      {"cached_tokens_total", s.cached_tokens_total},
                                                      {"retractions_total", s.retractions_total},
                                                      {"last_gen_throughput", s.last_decode_tokens_per_s},
                                                      {"avg_spec_accept_length", s.spec_accept_length()},
                                                      {"spec_verify_total", s.spec_verify_total}}});
    info["version"] = "dsserve-0.1";
    resp->send(json_response(json_text(info)));
  });
}

}  // namespace dsserve::server
