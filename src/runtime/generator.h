// Single-request generation over the paged cache: prefill (optionally in chunks, expanded MLA),
// then token-by-token decode (absorbed MLA), with SGLang's logprob outputs. The scheduler of the
// serving layer batches many requests; this is the path of `dsserve generate` and the golden tests.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "model/deepseek_v3.h"
#include "runtime/page_pool.h"
#include "runtime/sampler.h"

namespace dsserve {

struct GenerateRequest {
  std::vector<int32_t> input_ids;
  int max_new_tokens = 16;
  SamplingParams sampling;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  bool return_logprob = false;
  int logprob_start_len = -1;  // -1: no input logprobs (SGLang's default); 0: from the first token
  int top_logprobs_num = 0;
  int chunk_size = 0;          // prefill chunk in tokens; 0: the whole prompt at once
  AttentionMode decode_attention = AttentionMode::Absorbed;
  AttentionMode prefill_attention = AttentionMode::Expanded;
};

using TokenLogprob = std::pair<std::optional<float>, int32_t>;  // (logprob or null, token id)

struct GenerateResult {
  std::vector<int32_t> output_ids;
  std::string finish_type;      // "length" or "stop"
  int32_t finish_value = 0;     // the length, or the matched stop token
  std::vector<TokenLogprob> input_token_logprobs, output_token_logprobs;
  std::vector<std::optional<std::vector<std::pair<float, int32_t>>>> input_top_logprobs, output_top_logprobs;
  std::vector<std::vector<float>> prompt_logits;  // filled only when keep_prompt_logits
};

class Generator {
 public:
  Generator(DeepseekV3Model& model, LatentCache& cache, PagePool& pool) : model_(model), cache_(cache), pool_(pool) {}
  GenerateResult generate(const GenerateRequest& req, bool keep_prompt_logits = false);

 private:
  DeepseekV3Model& model_;
  LatentCache& cache_;
  PagePool& pool_;
};

}  // namespace dsserve
