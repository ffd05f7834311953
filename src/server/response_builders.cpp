// Usage and logprob pieces of responses (see response_builders.h).
#include "server/response_builders.h"

#include <cmath>

namespace dsserve::server {

ojson usage_json(const std::vector<const GenerationJob*>& jobs, int n_per_prompt) {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (n_per_prompt <= 1 || i % size_t(n_per_prompt) == 0) {
      prompt += jobs[i]->prompt_tokens;
      cached += jobs[i]->cached_tokens;
    }
    completion += jobs[i]->completion_tokens();
  }
  return ojson{{"prompt_tokens", prompt},
               {"completion_tokens", completion},
               {"total_tokens", prompt + completion},
               {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

std::string token_text(const ServerContext& ctx, int32_t id) {
  if (!ctx.tokenizer || id < 0 || id >= ctx.tokenizer->vocab_size()) return "";
  int32_t one[1] = {id};
  return ctx.tokenizer->decode(one, false);
}

namespace {
ojson bytes_of(const ServerContext& ctx, int32_t id) {
  ojson b = ojson::array();
  if (!ctx.tokenizer || id < 0 || id >= ctx.tokenizer->vocab_size()) return b;
  for (unsigned char c : ctx.tokenizer->token_bytes(id)) b.push_back(int(c));
  return b;
}
// JSON has no -inf: clamp as OpenAI does (-9999.0).
double finite(float lp) { return std::isfinite(lp) ? double(lp) : -9999.0; }
}  // namespace

ojson chat_logprobs(const ServerContext& ctx, const GenerationJob& job, size_t begin, size_t end, int top_n) {
  ojson content = ojson::array();
  for (size_t i = begin; i < end && i < job.output_token_logprobs.size(); ++i) {
    auto& [lp, id] = job.output_token_logprobs[i];
    ojson e = {{"token", token_text(ctx, id)}, {"logprob", finite(lp.value_or(0.f))}, {"bytes", bytes_of(ctx, id)}};
    ojson tops = ojson::array();
    if (top_n > 0 && i < job.output_top_logprobs.size() && job.output_top_logprobs[i]) {
      int k = 0;
      for (auto& [tlp, tid] : *job.output_top_logprobs[i]) {
        if (k++ >= top_n) break;
        tops.push_back({{"token", token_text(ctx, tid)}, {"logprob", finite(tlp)}, {"bytes", bytes_of(ctx, tid)}});
      }
    }
    e["top_logprobs"] = tops;
    content.push_back(std::move(e));
  }
  return ojson{{"content", content}};
}

ojson completion_logprobs(const ServerContext& ctx, const GenerationJob& job, size_t begin, size_t end,
                          bool include_prompt, size_t offset0, size_t unshown_prompt_tokens) {
  ojson tokens = ojson::array(), token_lps = ojson::array(), tops = ojson::array(), offsets = ojson::array();
  size_t offset = offset0;
  auto add = [&](const TokenLogprob& tl, const TopLogprobs* top, bool shown) {
    auto& [lp, id] = tl;
    std::string t = token_text(ctx, id);
    tokens.push_back(t);
    token_lps.push_back(lp ? ojson(finite(*lp)) : ojson(nullptr));
    if (top && *top) {
      ojson m = ojson::object();
      for (auto& [tlp, tid] : **top) m[token_text(ctx, tid)] = finite(tlp);
      tops.push_back(m);
    } else {
      tops.push_back(nullptr);
    }
    offsets.push_back(offset);
    if (shown) offset += t.size();
  };
  if (include_prompt)
    for (size_t i = 0; i < job.input_token_logprobs.size(); ++i)
      add(job.input_token_logprobs[i], i < job.input_top_logprobs.size() ? &job.input_top_logprobs[i] : nullptr,
          i >= unshown_prompt_tokens);
  for (size_t i = begin; i < end && i < job.output_token_logprobs.size(); ++i)
    add(job.output_token_logprobs[i], i < job.output_top_logprobs.size() ? &job.output_top_logprobs[i] : nullptr,
        true);
  return ojson{{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

ojson native_token_logprobs(const ServerContext* ctx, const std::vector<TokenLogprob>& lps, bool with_text) {
  ojson out = ojson::array();
  for (auto& [lp, id] : lps)
    out.push_back(ojson::array({lp ? ojson(finite(*lp)) : ojson(nullptr), id,
                                with_text && ctx ? ojson(token_text(*ctx, id)) : ojson(nullptr)}));
  return out;
}

ojson native_top_logprobs(const ServerContext* ctx, const std::vector<TopLogprobs>& tops, bool with_text) {
  ojson out = ojson::array();
  for (auto& t : tops) {
    if (!t) {
      out.push_back(nullptr);
      continue;
    }
    ojson a = ojson::array();
    for (auto& [lp, id] : *t)
      a.push_back(ojson::array({finite(lp), id, with_text && ctx ? ojson(token_text(*ctx, id)) : ojson(nullptr)}));
    out.push_back(a);
  }
  return out;
}

}  // namespace dsserve::server
