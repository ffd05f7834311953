// Output events, stop conditions and finishing (see output_delivery.h).
#include "runtime/output_delivery.h"

#include <algorithm>
#include <optional>

namespace dsserve {

void OutputDelivery::deliver(const RequestPtr& r, size_t from, std::span<const SampledToken> picked) {
  RequestOutput out;
  out.rid = r->g.rid;
  if (r->g.return_logprob && !r->sent_input_logprobs) {
    if (r->lp_start() == 0) {
      out.input_token_logprobs.push_back({std::nullopt, r->g.input_ids[0]});
      out.input_top_logprobs.push_back(std::nullopt);
    }
    out.input_token_logprobs.insert(out.input_token_logprobs.end(), r->input_lp.begin(), r->input_lp.end());
    out.input_top_logprobs.insert(out.input_top_logprobs.end(), r->input_top.begin(), r->input_top.end());
    r->input_lp.clear();
    r->input_top.clear();
    r->sent_input_logprobs = true;
  }
  const SamplingParams& sp = r->g.sampling;
  std::optional<FinishReason> why;
  if (sp.max_new_tokens == 0) {
    r->output_ids.clear();
    why = FinishReason{"length", {}, 0, ""};
  }
  for (size_t i = from; i < r->output_ids.size() && !why; ++i) {
    const int32_t tok = r->output_ids[i];
    out.new_token_ids.push_back(tok);
    ++generation_tokens_;
    if (r->g.return_logprob) {
      const SampledToken& c = picked[i - from];
      out.output_token_logprobs.push_back({c.logprob, tok});
      out.output_top_logprobs.push_back(c.top_logprobs);
    }
    const bool eos = (!sp.ignore_eos || r->grammar_ended) && tok == cfg_.eos_token_id;
    const bool listed = std::find(sp.stop_token_ids.begin(), sp.stop_token_ids.end(), tok) != sp.stop_token_ids.end();
    if ((eos || listed) && (int(i + 1) >= sp.min_new_tokens || r->grammar_ended))
      why = FinishReason{"stop", tok, 0, ""};
    else if (int(i + 1) >= sp.max_new_tokens)
      why = FinishReason{"length", {}, sp.max_new_tokens, ""};
    if (why) {  // drop what came after the stop
      r->output_ids.resize(i + 1);
      r->kv_len = std::min(r->kv_len, r->fill_len() - 1);
    }
  }
  if (why) {
    finish(r, std::move(*why), std::move(out));
    return;
  }
  fill_counts(*r, out);
  r->cb(std::move(out));
}

void OutputDelivery::finish(RequestPtr r, FinishReason why, RequestOutput out) {
  if (q_.by_rid.erase(r->g.rid) == 0) return;  // already finished
  inbox_.release_rid(r->g.rid);
  if (auto it = std::find(q_.running.begin(), q_.running.end(), r); it != q_.running.end()) q_.running.erase(it);
  if (auto it = std::find(q_.waiting.begin(), q_.waiting.end(), r); it != q_.waiting.end()) q_.waiting.erase(it);
  if (why.type != "abort" && r->kv_len > 0 && r->discard_before == 0) kv_.cache_prefix(*r, r->kv_len);
  kv_.release(*r);
  prompt_tokens_ += int64_t(r->g.input_ids.size());
  cached_total_ += r->cached_tokens;
  out.rid = r->g.rid;
  out.finished = true;
  out.finish_reason = std::move(why);
  fill_counts(*r, out);
  r->cb(std::move(out));
}

void OutputDelivery::abort_all(const std::string& message) {
  for (auto& r : std::vector<RequestPtr>(q_.running)) finish(r, {"abort", {}, 0, message});
  for (auto& r : std::vector<RequestPtr>(q_.waiting.begin(), q_.waiting.end())) finish(r, {"abort", {}, 0, message});
  q_.running.clear();
  q_.waiting.clear();
}

void OutputDelivery::fill_counts(const RequestState& r, RequestOutput& out) const {
  out.prompt_tokens = int(r.g.input_ids.size());
  out.completion_tokens = int(r.output_ids.size());
  out.cached_tokens = r.cached_tokens;
  out.spec_verify_ct = r.draft.verify_count;
}

}  // namespace dsserve
