// The speculative step (see speculative_decoder.h).
#include "runtime/speculative/speculative_decoder.h"

#include <deque>

#include "core/error.h"
#include "runtime/constrained_rows.h"
#include "runtime/speculative/tree_verify.h"

namespace dsserve {

SpeculativeDecoder::SpeculativeDecoder(ModelRunner& model, LatentCache& cache, LatentCache& mtp_cache, int page_size,
                                       int32_t trash_slot, const SpeculativeOptions& opt)
    : model_(model), cache_(cache), page_size_(page_size), trash_slot_(trash_slot),
      drafter_(model, mtp_cache, trash_slot, opt) {}

void SpeculativeDecoder::after_prefill(const std::vector<RequestState*>& batch, const std::vector<SequenceChunk>& chunks,
                                       const ForwardOutput& fo, const std::vector<RequestState*>& completed) {
  // MTP rows of a chunk [start, start + n): position t pairs the target's hidden state at t with
  // token t + 1, which is always known: the next prompt token, or the token just sampled.
  // The rows are the forward's, in order: its hidden states stay where they are.
  std::vector<std::vector<DraftRow>> rows;
  HiddenRows hidden{HiddenRows::Target, {}};
  for (size_t i = 0; i < batch.size(); ++i) {
    const std::vector<int32_t> f = batch[i]->fill();
    const int64_t start = chunks[i].prefix_len, n = int64_t(chunks[i].tokens.size());
    std::vector<DraftRow> out;
    for (int64_t t = start; t < start + n; ++t) {
      out.push_back({t, f[size_t(t + 1)]});
      hidden.rows.push_back(int32_t(hidden.rows.size()));
    }
    rows.push_back(std::move(out));
  }
  DS_CHECK(int64_t(hidden.rows.size()) == fo.hidden.size(0), "speculative: {} MTP rows after a prefill of {} tokens",
           hidden.rows.size(), fo.hidden.size(0));
  auto last = drafter_.extend(batch, rows, hidden);
  std::vector<RequestState*> drafting;
  std::vector<EagleWorker::LastRow> drafting_last;
  for (size_t i = 0; i < batch.size(); ++i)
    if (std::find(completed.begin(), completed.end(), batch[i]) != completed.end()) {
      drafting.push_back(batch[i]);
      drafting_last.push_back(std::move(last[i]));
    }
  if (!drafting.empty()) drafter_.draft(drafting, std::move(drafting_last));
}

std::vector<SpeculativeDecoder::Emitted> SpeculativeDecoder::verify(const std::vector<RequestState*>& batch,
                                                                    TokenChooser& chooser, const Forward& forward) {
  std::vector<SequenceChunk> chunks;
  for (RequestState* r : batch) chunks.push_back(verify_chunk(*r));
  ForwardOutput fo = forward(build_forward_batch(chunks, {page_size_, AttentionMode::Absorbed, 0, trash_slot_}));
  std::vector<SamplingRow> rows;
  std::deque<SamplingRowLists> lists;
  ConstraintMasks masks(chooser.vocab_size());
  for (RequestState* r : batch) append_verify_rows(*r, chooser, masks, lists, rows);
  const std::vector<SampledToken> picked = model_.backend().sample(fo.logits, rows);

  std::vector<Emitted> emitted(batch.size());
  std::vector<std::vector<DraftRow>> draft_rows;
  HiddenRows draft_hidden{HiddenRows::Target, {}};  // rows of the verify forward, gathered on the device
  std::vector<int32_t> move_src, move_dst;
  size_t base = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    RequestState& r = *batch[i];
    const std::span<const SampledToken> mine(picked.data() + base, chunks[i].tokens.size());
    emitted[i].first_new = r.output_ids.size();
    std::vector<DraftRow> dr;
    for (int row : acceptance_walk(r.draft, mine)) {
      const int32_t tok = mine[size_t(row)].token;
      chooser.accept(r, tok);
      const int64_t at = r.kv_len + int64_t(dr.size());  // sequence position of this row's token
      if (row != int(dr.size())) {                        // an accepted node off the chain: move it
        move_src.push_back(r.pages.slot(r.kv_len + row, page_size_));
        move_dst.push_back(r.pages.slot(at, page_size_));
      }
      r.output_ids.push_back(tok);
      emitted[i].picked.push_back(mine[size_t(row)]);
      dr.push_back({at, tok});
      draft_hidden.rows.push_back(int32_t(base) + row);
    }
    const int64_t accepted = int64_t(dr.size());
    r.kv_len += accepted;
    r.draft.verify_count += 1;
    r.draft.accepted_total += accepted;
    verify_total_ += 1;
    accepted_total_ += accepted;
    draft_rows.push_back(std::move(dr));
    base += chunks[i].tokens.size();
  }
  if (!move_src.empty()) model_.move_cache_slots(cache_, move_src, move_dst);  // every rank's copy
  drafter_.draft(batch, drafter_.extend(batch, draft_rows, draft_hidden));
  return emitted;
}

}  // namespace dsserve
