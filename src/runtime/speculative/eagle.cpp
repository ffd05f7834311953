// EAGLE drafting with the MTP layer (see eagle.h).
#include "runtime/speculative/eagle.h"

#include <algorithm>

#include "core/error.h"
#include "runtime/batch_builder.h"

namespace dsserve {

void SpeculativeOptions::validate_and_default() {
  if (!enabled()) return;
  DS_CHECK(algorithm == "EAGLE" || algorithm == "NEXTN",
           "--speculative-algorithm: expected EAGLE or NEXTN, found '{}'", algorithm);
  if (num_steps <= 0) num_steps = 3;
  if (eagle_topk <= 0) eagle_topk = 1;
  if (num_draft_tokens <= 0) num_draft_tokens = eagle_topk == 1 ? num_steps + 1 : 4;
  DS_CHECK(num_steps * eagle_topk + 1 >= num_draft_tokens,
           "--speculative-num-draft-tokens {} exceeds --speculative-num-steps x --speculative-eagle-topk + 1 = {}",
           num_draft_tokens, num_steps * eagle_topk + 1);
  DS_CHECK(num_draft_tokens >= 2, "--speculative-num-draft-tokens must be at least 2, found {}", num_draft_tokens);
  DS_CHECK(eagle_topk == 1,
           "--speculative-eagle-topk {}: tree drafting is not implemented yet; use 1 (chain drafting)", eagle_topk);
  DS_CHECK(num_draft_tokens == num_steps + 1,
           "with --speculative-eagle-topk 1 the chain verifies num_steps + 1 = {} tokens; "
           "--speculative-num-draft-tokens is {}",
           num_steps + 1, num_draft_tokens);
}

EagleWorker::EagleWorker(DeepseekV3Model& model, LatentCache& mtp_cache, int32_t trash_slot, SpeculativeOptions opt)
    : model_(model), mtp_cache_(mtp_cache), trash_slot_(trash_slot), opt_(std::move(opt)) {
  DS_CHECK(model_.has_mtp(), "speculative decoding needs the checkpoint's MTP layer (num_nextn_predict_layers > 0 "
                             "and model.layers.{}.* present)", model_.config().num_hidden_layers);
}

std::vector<EagleWorker::LastRow> EagleWorker::extend(const std::vector<RequestState*>& reqs,
                                                      const std::vector<std::vector<DraftRow>>& rows,
                                                      const std::vector<float>& hidden) {
  const int64_t H = model_.config().hidden_size;
  std::vector<SequenceChunk> chunks;
  int64_t total = 0;
  size_t longest = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& rr = rows[i];
    DS_CHECK(!rr.empty(), "draft extend: request {} has no rows", reqs[i]->g.rid);
    SequenceChunk c{&reqs[i]->pages, rr.front().position, {}, {int32_t(rr.size()) - 1}};
    for (size_t j = 0; j < rr.size(); ++j) {
      DS_CHECK(rr[j].position == rr.front().position + int64_t(j), "draft extend: rows must be consecutive");
      c.tokens.push_back(rr[j].next_token);
    }
    total += int64_t(rr.size());
    longest = std::max(longest, rr.size());
    chunks.push_back(std::move(c));
  }
  DS_CHECK(int64_t(hidden.size()) == total * H, "draft extend: {} hidden values for {} rows of {}", hidden.size(),
           total, H);
  BatchLayout layout;
  layout.page_size = mtp_cache_.page_size;
  layout.mode = longest > size_t(opt_.num_steps + 1) ? AttentionMode::Expanded : AttentionMode::Absorbed;
  layout.key_shift = 1;
  layout.trash_slot = trash_slot_;
  ForwardBatch fb = build_forward_batch(chunks, layout);
  Tensor h = Tensor::zeros_host(DType::F32, {total, H});
  std::copy(hidden.begin(), hidden.end(), h.ptr<float>());
  Backend& be = model_.backend();
  ForwardOutput out = model_.forward_mtp(fb, be.to_device(h), mtp_cache_);
  Tensor logits = be.to_host_f32(out.logits), hid = be.to_host_f32(out.hidden);
  const int64_t V = logits.size(1);
  std::vector<LastRow> last(reqs.size());
  int64_t row = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    row += int64_t(rows[i].size());
    last[i].logits.assign(logits.ptr<float>() + int64_t(i) * V, logits.ptr<float>() + int64_t(i + 1) * V);
    last[i].hidden.assign(hid.ptr<float>() + (row - 1) * H, hid.ptr<float>() + row * H);
  }
  return last;
}

void EagleWorker::draft(const std::vector<RequestState*>& reqs, std::vector<LastRow> last) {
  // Position of each request's last MTP row: the token before its last (not yet cached) token.
  std::vector<int64_t> pos(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    pos[i] = reqs[i]->fill_len() - 2;
    reqs[i]->draft.tokens.clear();
  }
  for (int step = 0; step < opt_.num_steps; ++step) {
    std::vector<std::vector<DraftRow>> rows(reqs.size());
    std::vector<float> hidden;
    for (size_t i = 0; i < reqs.size(); ++i) {
      const auto& lg = last[i].logits;
      int32_t tok = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
      reqs[i]->draft.tokens.push_back(tok);
      rows[i].push_back({++pos[i], tok});
      hidden.insert(hidden.end(), last[i].hidden.begin(), last[i].hidden.end());
    }
    if (step + 1 == opt_.num_steps) break;
    last = extend(reqs, rows, hidden);
  }
}

}  // namespace dsserve
