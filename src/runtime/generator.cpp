// Single-request generation (see generator.h).
#include "runtime/generator.h"

#include <algorithm>

#include "core/error.h"
#include "runtime/batch_builder.h"

namespace dsserve {

namespace {
// Host float32 rows of a [R, vocab] logits tensor.
std::vector<std::vector<float>> logits_rows(Backend& be, const Tensor& logits) {
  Tensor h = be.to_host_f32(logits);
  int64_t R = h.size(0), V = h.size(1);
  std::vector<std::vector<float>> rows(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) rows[r].assign(h.ptr<float>() + r * V, h.ptr<float>() + (r + 1) * V);
  return rows;
}
}  // namespace

GenerateResult Generator::generate(const GenerateRequest& req, bool keep_prompt_logits) {
  const ModelConfig& cfg = model_.config();
  const int64_t T = int64_t(req.input_ids.size());
  DS_CHECK(T > 0, "generate: input_ids is empty");
  DS_CHECK(req.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, found {}", req.max_new_tokens);
  for (int64_t t = 0; t < T; ++t)
    DS_CHECK(req.input_ids[t] >= 0 && req.input_ids[t] < cfg.vocab_size,
             "generate: input_ids[{}] = {} is outside the vocabulary [0, {})", t, req.input_ids[t], cfg.vocab_size);
  const int64_t total = T + req.max_new_tokens;
  DS_CHECK(total <= model_.context_len(), "generate: {} prompt + {} new tokens exceed the context length {}", T,
           req.max_new_tokens, model_.context_len());
  const int page_size = pool_.page_size();
  SequencePages seq;
  DS_CHECK(seq.reserve(pool_, total), "generate: the KV cache has {} free pages of {} tokens; {} tokens need {}",
           pool_.num_free(), page_size, total, (total + page_size - 1) / page_size);

  struct ReleaseOnExit {
    SequencePages& seq;
    PagePool& pool;
    ~ReleaseOnExit() { seq.release_all(pool); }
  } release{seq, pool_};

  GenerateResult res;
  Sampler sampler(req.sampling);
  const int64_t lp_start = req.return_logprob && req.logprob_start_len >= 0 ? req.logprob_start_len : T;
  // Positions whose logits are needed: the one before each input token with a logprob, and the last.
  auto wanted = [&](int64_t p) { return keep_prompt_logits || p == T - 1 || (p + 1 >= std::max<int64_t>(lp_start, 1) && p + 1 < T); };
  std::vector<std::vector<float>> prompt_rows(static_cast<size_t>(T));
  const int64_t chunk = req.chunk_size > 0 ? req.chunk_size : T;
  for (int64_t s = 0; s < T; s += chunk) {
    int64_t e = std::min(T, s + chunk);
    SequenceChunk c{&seq, s, std::vector<int32_t>(req.input_ids.begin() + s, req.input_ids.begin() + e), {}};
    for (int64_t p = s; p < e; ++p)
      if (wanted(p)) c.logit_offsets.push_back(int32_t(p - s));
    ForwardBatch b = build_forward_batch({c}, page_size, req.prefill_attention);
    auto rows = logits_rows(model_.backend(), model_.forward(b, cache_).logits);
    for (size_t i = 0; i < c.logit_offsets.size(); ++i) {
      prompt_rows[s + c.logit_offsets[i]] = std::move(rows[i]);
    }
  }
  if (req.return_logprob) {
    for (int64_t t = lp_start; t < T; ++t) {
      if (t == 0) {
        res.input_token_logprobs.push_back({std::nullopt, req.input_ids[0]});
        res.input_top_logprobs.push_back(std::nullopt);
        continue;
      }
      const auto& row = prompt_rows[t - 1];
      res.input_token_logprobs.push_back({token_logprob(row, req.input_ids[t]), req.input_ids[t]});
      res.input_top_logprobs.push_back(top_logprobs(row, req.top_logprobs_num));
    }
  }

  std::vector<float> row = prompt_rows[T - 1];
  if (keep_prompt_logits) res.prompt_logits = std::move(prompt_rows);
  res.finish_type = "length";
  res.finish_value = req.max_new_tokens;
  for (int j = 0; j < req.max_new_tokens; ++j) {
    int32_t tok = sampler.sample(row);
    res.output_ids.push_back(tok);
    if (req.return_logprob) {
      res.output_token_logprobs.push_back({token_logprob(row, tok), tok});
      res.output_top_logprobs.push_back(top_logprobs(row, req.top_logprobs_num));
    }
    bool stop = !req.ignore_eos && (tok == cfg.eos_token_id || std::find(req.stop_token_ids.begin(),
                                                                          req.stop_token_ids.end(), tok) !=
                                                                    req.stop_token_ids.end());
    if (stop) {
      res.finish_type = "stop";
      res.finish_value = tok;
      break;
    }
    if (j + 1 == req.max_new_tokens) break;
    SequenceChunk c{&seq, T + j, {tok}, {0}};
    ForwardBatch b = build_forward_batch({c}, page_size, req.decode_attention);
    row = std::move(logits_rows(model_.backend(), model_.forward(b, cache_).logits)[0]);
  }
  return res;
}

}  // namespace dsserve
