// The prefill step (see scheduler_steps.h): waiting requests admitted in policy order against the
// token budget (--max-prefill-tokens, --chunked-prefill-size) and free pages, after a prefix match
// in the radix cache; one expanded-attention forward over their next chunks; the first token of
// every request whose prompt is now complete chosen on the device, and the input logprobs asked
// for read back. Requests with more prompt left go back to the front of the queue.
#include <algorithm>
#include <span>

#include "backend/sampling_math.h"
#include "runtime/scheduler_steps.h"

namespace dsserve {

namespace {

bool wants_input_logprob(const RequestState& r, int64_t p) {
  const int64_t lp0 = r.lp_start();
  return !r.admitted_once && lp0 >= 0 && p + 1 >= std::max<int64_t>(lp0, 1) && p + 1 < int64_t(r.g.input_ids.size());
}

// Rows `which` of t [R, C] (t itself when they are all its rows in order).
Tensor select_rows(Backend& be, const Tensor& t, const std::vector<int32_t>& which) {
  bool all = int64_t(which.size()) == t.size(0);
  for (size_t i = 0; all && i < which.size(); ++i) all = which[i] == int32_t(i);
  return all ? t : be.gather_rows(t, be.upload_i32(which, {int64_t(which.size())}));
}

// The chunks of one prefill forward, taking requests off s.q.waiting into s.q.batch.
std::vector<SequenceChunk> admit(StepContext& s) {
  int64_t budget = s.opt.max_prefill_tokens > 0 ? s.opt.max_prefill_tokens : INT64_MAX;
  if (s.opt.chunked_prefill_size > 0) budget = std::min<int64_t>(budget, s.opt.chunked_prefill_size);
  std::vector<SequenceChunk> chunks;
  for (auto it = s.q.waiting.begin(); it != s.q.waiting.end() && budget > 0;) {
    RequestPtr r = *it;
    if (int(s.q.running.size() + s.q.batch.size()) >= s.opt.max_running_requests) break;
    const bool fresh = r->kv_len == 0 && r->pages.pages.empty();
    if (fresh && s.kv.shares_prefix_in_flight(*r, s.q.batch)) {  // n > 1, a shared system prompt: reuse it
      ++it;
      continue;
    }
    if (fresh) s.kv.match_prefix(*r);
    const int64_t len = r->fill_len(), take = std::min<int64_t>(budget, len - r->kv_len);
    if (!s.kv.reserve(*r, r->kv_len + take + s.spec_margin())) {
      if (fresh) s.kv.release(*r);  // drop a prefix match we cannot use now
      break;                        // no room: wait for pages (do not overtake)
    }
    std::vector<int32_t> f = r->fill();
    SequenceChunk c{&r->pages, r->kv_len, std::vector<int32_t>(f.begin() + r->kv_len, f.begin() + r->kv_len + take), {}};
    c.discard_before = r->discard_before;
    for (int64_t p = r->kv_len; p < r->kv_len + take; ++p)
      if (wants_input_logprob(*r, p) || p == len - 1) c.logit_offsets.push_back(int32_t(p - r->kv_len));
    chunks.push_back(std::move(c));
    s.q.batch.push_back(r);
    budget -= take;
    it = s.q.waiting.erase(it);
  }
  return chunks;
}

}  // namespace

bool run_prefill(StepContext& s) {
  if (s.q.waiting.empty()) return false;
  s.kv.order(s.q);
  std::vector<SequenceChunk> chunks = admit(s);
  if (s.q.batch.empty()) return false;
  ForwardOutput fo = s.forward(build_forward_batch(chunks, {s.kv.page_size(), AttentionMode::Expanded, 0, s.trash_slot}));
  Backend& be = s.model.backend();

  // The logits rows, in chunk order, are the last position of every request whose prompt is now
  // complete (its first token is chosen on the device) and the positions whose input logprobs
  // were asked for (read back to the host).
  std::vector<int32_t> last_rows, logprob_rows;
  std::vector<RequestState*> completing;
  int32_t row = 0;
  for (size_t i = 0; i < s.q.batch.size(); ++i) {
    RequestState& r = *s.q.batch[i];
    for (int32_t off : chunks[i].logit_offsets) {
      const int64_t p = chunks[i].prefix_len + off;
      if (wants_input_logprob(r, p)) logprob_rows.push_back(row);
      if (p == r.fill_len() - 1) last_rows.push_back(row), completing.push_back(&r);
      ++row;
    }
  }
  Tensor logprob_logits;
  if (!logprob_rows.empty()) logprob_logits = be.to_host_f32(select_rows(be, fo.logits, logprob_rows));
  std::vector<SampledToken> first;
  if (!completing.empty()) first = s.chooser.choose(be, select_rows(be, fo.logits, last_rows), completing);

  int64_t logprob_row = 0;
  std::vector<RequestPtr> completed, continuing;
  for (size_t i = 0; i < s.q.batch.size(); ++i) {
    RequestPtr r = s.q.batch[i];
    const int64_t start = chunks[i].prefix_len, n = int64_t(chunks[i].tokens.size()), len = r->fill_len();
    bool complete = false;
    for (int32_t off : chunks[i].logit_offsets) {
      const int64_t p = start + off;
      if (wants_input_logprob(*r, p)) {
        const int64_t V = logprob_logits.size(1);
        const std::span<const float> lg(logprob_logits.ptr<float>() + logprob_row++ * V, size_t(V));
        const int32_t next = r->g.input_ids[size_t(p + 1)];
        r->input_lp.push_back({token_logprob(lg, next), next});
        r->input_top.push_back(top_logprobs(lg, r->g.top_logprobs_num));
      }
      if (p == len - 1) complete = true;
    }
    r->kv_len = start + n;
    if (complete) {
      r->output_ids.push_back(first[completed.size()].token);
      r->admitted_once = true;
      completed.push_back(r);
    } else {
      continuing.push_back(r);
    }
  }
  if (s.spec) {
    std::vector<RequestState*> done;
    for (auto& r : completed) done.push_back(r.get());
    s.spec->after_prefill(s.q.batch_states(), chunks, fo, done);
  }
  for (size_t i = 0; i < completed.size(); ++i) {
    RequestPtr r = completed[i];
    r->discard_before = 0;
    s.kv.cache_prefix(*r, r->kv_len);
    s.q.running.push_back(r);
    s.out.deliver(r, r->output_ids.size() - 1, std::span(&first[i], 1));
  }
  s.q.waiting.insert(s.q.waiting.begin(), continuing.begin(), continuing.end());
  return true;
}

}  // namespace dsserve
