// The decode step (see scheduler_steps.h): every running request's last token through one forward
// (absorbed attention unless --disable-mla) and its next token chosen, or with speculative
// decoding one verification of every request's draft tree (runtime/speculative/).
#include <span>

#include "runtime/scheduler_steps.h"

namespace dsserve {

int64_t run_decode(StepContext& s) {
  s.kv.reserve_running(s.q, s.spec ? s.spec_margin() : 1);
  if (s.q.running.empty()) return 0;
  s.q.batch.assign(s.q.running.begin(), s.q.running.end());
  std::vector<RequestState*> reqs = s.q.batch_states();
  int64_t emitted = 0;
  if (s.spec) {
    const std::vector<SpeculativeDecoder::Emitted> e = s.spec->verify(reqs, s.chooser, s.forward);
    for (size_t i = 0; i < s.q.batch.size(); ++i) {
      emitted += int64_t(e[i].picked.size());
      s.out.deliver(s.q.batch[i], e[i].first_new, e[i].picked);
    }
    return emitted;
  }
  std::vector<SequenceChunk> chunks;
  for (RequestState* r : reqs) chunks.push_back(SequenceChunk{&r->pages, r->kv_len, {r->output_ids.back()}, {0}});
  ForwardOutput fo = s.forward(build_forward_batch(chunks, {s.kv.page_size(), s.opt.decode_attention, 0, s.trash_slot}));
  std::vector<SampledToken> picked = s.chooser.choose(s.model.backend(), fo.logits, reqs);
  for (size_t i = 0; i < s.q.batch.size(); ++i) {
    RequestPtr r = s.q.batch[i];
    r->kv_len += 1;
    r->output_ids.push_back(picked[i].token);
    s.out.deliver(r, r->output_ids.size() - 1, std::span(&picked[i], 1));
  }
  return int64_t(s.q.batch.size());
}

}  // namespace dsserve
