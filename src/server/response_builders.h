// Pieces of response bodies shared by the routes: OpenAI usage objects, chat and completion
// logprobs, SGLang's meta_info logprob lists. Pure functions of the finished (or running) jobs.
#pragma once
#include <nlohmann/json.hpp>

#include <vector>

#include "server/generation_job.h"
#include "server/server_context.h"

namespace dsserve::server {

using ojson = nlohmann::ordered_json;

// {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens}}.
// prompt_tokens and cached_tokens count each distinct prompt once (the first job of each prompt).
ojson usage_json(const std::vector<const GenerationJob*>& jobs, int n_per_prompt);

// Chat logprobs {"content": [{token, logprob, bytes, top_logprobs: [...]}]} for output ids [begin, end).
ojson chat_logprobs(const ServerContext& ctx, const GenerationJob& job, size_t begin, size_t end, int top_n);

// Completions logprobs {tokens, token_logprobs, top_logprobs, text_offset} for output ids
// [begin, end); with echo, the prompt's tokens first (when include_prompt). text_offset starts at
// `offset0` (the length of text already sent); the first `unshown_prompt_tokens` prompt tokens
// (a BOS the echoed text does not hold) take no room in it.
ojson completion_logprobs(const ServerContext& ctx, const GenerationJob& job, size_t begin, size_t end,
                          bool include_prompt, size_t offset0, size_t unshown_prompt_tokens = 0);

// SGLang's [logprob, token_id, text-or-null] lists.
ojson native_token_logprobs(const ServerContext* ctx, const std::vector<TokenLogprob>& lps, bool with_text);
ojson native_top_logprobs(const ServerContext* ctx, const std::vector<TopLogprobs>& tops, bool with_text);

// Text of one token for logprob displays ("" without a tokenizer).
std::string token_text(const ServerContext& ctx, int32_t id);

}  // namespace dsserve::server
