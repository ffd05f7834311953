// EAGLE drafting with the MTP layer (see eagle.h).
#include "runtime/speculative/eagle.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "runtime/batch_builder.h"

namespace dsserve {

void SpeculativeOptions::validate_and_default() {
  if (!enabled()) return;
  DS_CHECK(algorithm == "EAGLE" || algorithm == "NEXTN",
           "--speculative-algorithm: expected EAGLE or NEXTN, found '{}'", algorithm);
  if (num_steps <= 0) num_steps = 3;
  if (eagle_topk <= 0) eagle_topk = 1;
  if (num_draft_tokens <= 0) num_draft_tokens = eagle_topk == 1 ? num_steps + 1 : std::min(8, num_steps * eagle_topk + 1);
  DS_CHECK(num_steps * eagle_topk + 1 >= num_draft_tokens,
           "--speculative-num-draft-tokens {} exceeds --speculative-num-steps x --speculative-eagle-topk + 1 = {}",
           num_draft_tokens, num_steps * eagle_topk + 1);
  DS_CHECK(num_draft_tokens >= 2, "--speculative-num-draft-tokens must be at least 2, found {}", num_draft_tokens);
  DS_CHECK(eagle_topk > 1 || num_draft_tokens == num_steps + 1,
           "with --speculative-eagle-topk 1 the chain verifies num_steps + 1 = {} tokens; "
           "--speculative-num-draft-tokens is {}",
           num_steps + 1, num_draft_tokens);
}

EagleWorker::EagleWorker(ModelRunner& model, LatentCache& mtp_cache, int32_t trash_slot, SpeculativeOptions opt)
    : model_(model), mtp_cache_(mtp_cache), trash_slot_(trash_slot), opt_(std::move(opt)) {
  DS_CHECK(model_.has_mtp(), "speculative decoding needs the checkpoint's MTP layer (num_nextn_predict_layers > 0 "
                             "and model.layers.{}.* present)", model_.config().num_hidden_layers);
}

std::vector<EagleWorker::TopTokens> EagleWorker::run(const std::vector<SequenceChunk>& chunks, const HiddenRows& hidden) {
  size_t longest = 0;
  for (const auto& c : chunks) longest = std::max(longest, c.tokens.size());
  BatchLayout layout;
  layout.page_size = mtp_cache_.page_size;
  layout.mode = longest > size_t(opt_.num_steps + 1) ? AttentionMode::Expanded : AttentionMode::Absorbed;
  layout.key_shift = 1;
  layout.trash_slot = trash_slot_;
  bool any_mask = std::any_of(chunks.begin(), chunks.end(), [](auto& c) { return !c.tree_mask.empty(); });
  if (any_mask) layout.mode = AttentionMode::Absorbed;
  ForwardOutput out = model_.forward_mtp(build_forward_batch(chunks, layout), hidden, mtp_cache_);
  // The draft's choices are made where the logits are: the topk best tokens of each row come back.
  std::vector<SamplingRow> pick(static_cast<size_t>(out.logits.size(0)));
  for (auto& p : pick) p.temperature = 0.0f, p.top_logprobs = std::max(1, opt_.eagle_topk);
  std::vector<SampledToken> picked = model_.backend().sample(out.logits, pick);
  std::vector<TopTokens> top;
  for (auto& p : picked) top.push_back(std::move(p.top_logprobs));
  return top;
}

std::vector<EagleWorker::LastRow> EagleWorker::extend(const std::vector<RequestState*>& reqs,
                                                      const std::vector<std::vector<DraftRow>>& rows,
                                                      const HiddenRows& hidden) {
  std::vector<SequenceChunk> chunks;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& rr = rows[i];
    DS_CHECK(!rr.empty(), "draft extend: request {} has no rows", reqs[i]->g.rid);
    SequenceChunk c{&reqs[i]->pages, rr.front().position, {}, {int32_t(rr.size()) - 1}};
    for (size_t j = 0; j < rr.size(); ++j) {
      DS_CHECK(rr[j].position == rr.front().position + int64_t(j), "draft extend: rows must be consecutive");
      c.tokens.push_back(rr[j].next_token);
    }
    chunks.push_back(std::move(c));
  }
  std::vector<TopTokens> top = run(chunks, hidden);
  std::vector<LastRow> last(reqs.size());
  int32_t row = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    row += int32_t(rows[i].size());
    last[i].top = std::move(top[i]);  // one logits row per request: its last
    last[i].hidden_row = row - 1;
  }
  return last;
}

void EagleWorker::draft(const std::vector<RequestState*>& reqs, std::vector<LastRow> last) {
  for (RequestState* r : reqs) r->draft.tokens.clear(), r->draft.parent.clear(), r->draft.depth.clear();
  if (opt_.eagle_topk == 1)
    draft_chain(reqs, std::move(last));
  else
    draft_tree(reqs, std::move(last));
}

void EagleWorker::draft_chain(const std::vector<RequestState*>& reqs, std::vector<LastRow> last) {
  // Each request's last committed MTP row is at the position before its last (uncached) token.
  std::vector<int64_t> pos(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) pos[i] = reqs[i]->fill_len() - 2;
  for (int step = 0; step < opt_.num_steps; ++step) {
    std::vector<std::vector<DraftRow>> rows(reqs.size());
    HiddenRows hidden{HiddenRows::Draft, {}};
    for (size_t i = 0; i < reqs.size(); ++i) {
      const int32_t tok = last[i].top.front().second;  // the draft's greedy token
      DraftState& d = reqs[i]->draft;
      d.parent.push_back(int32_t(d.tokens.size()) - 1);
      d.depth.push_back(int32_t(d.tokens.size()) + 1);
      d.tokens.push_back(tok);
      rows[i].push_back({++pos[i], tok});
      hidden.rows.push_back(last[i].hidden_row);
    }
    if (step + 1 == opt_.num_steps) break;
    last = extend(reqs, rows, hidden);
  }
}

namespace {
struct TreeNode {
  int32_t token, parent, depth;
  double score;              // cumulative draft log-probability
  int32_t hidden_row = -1;   // the row of the last MTP output its expansion row consumes
  int expansion_row = -1;    // the tree MTP row that expanded it (-1: not expanded)
};
}  // namespace

void EagleWorker::draft_tree(const std::vector<RequestState*>& reqs, std::vector<LastRow> last) {
  const int k = opt_.eagle_topk;
  const size_t R = reqs.size();
  std::vector<std::vector<TreeNode>> nodes(R);
  std::vector<std::vector<int>> beam(R);
  for (size_t i = 0; i < R; ++i) {
    for (auto& [lp, tok] : last[i].top) {
      beam[i].push_back(int(nodes[i].size()));
      nodes[i].push_back({tok, -1, 1, lp, last[i].hidden_row});
    }
  }
  int rows_so_far = 0;  // tree MTP rows written after each request's committed entries
  for (int step = 1; step < opt_.num_steps; ++step) {
    std::vector<SequenceChunk> chunks;
    HiddenRows hidden{HiddenRows::Draft, {}};  // each beam node's hidden state: a row of the last MTP output
    for (size_t i = 0; i < R; ++i) {
      RequestState& r = *reqs[i];
      const int64_t committed = r.fill_len() - 1;  // MTP rows 0..committed-1 are in the cache
      SequenceChunk c{&r.pages, committed + rows_so_far, {}, {}};
      const int cols = rows_so_far + int(beam[i].size());
      c.mask_cols = cols;
      c.tree_mask.assign(size_t(beam[i].size()) * size_t(cols), 0);
      for (size_t b = 0; b < beam[i].size(); ++b) {
        TreeNode& n = nodes[i][beam[i][b]];
        n.expansion_row = rows_so_far + int(b);
        c.tokens.push_back(n.token);
        c.positions.push_back(int32_t(committed - 1 + n.depth));
        c.logit_offsets.push_back(int32_t(b));
        for (int a = beam[i][b]; a >= 0; a = nodes[i][a].parent) c.tree_mask[b * cols + nodes[i][a].expansion_row] = 1;
        hidden.rows.push_back(n.hidden_row);
      }
      chunks.push_back(std::move(c));
    }
    std::vector<TopTokens> out = run(chunks, hidden);
    int32_t row = 0;  // rows of this MTP output, in chunk order: one per beam node
    for (size_t i = 0; i < R; ++i) {
      std::vector<int> children;
      for (int b : beam[i]) {
        const TreeNode parent = nodes[i][b];
        for (auto& [lp, tok] : out[size_t(row)]) {
          children.push_back(int(nodes[i].size()));
          nodes[i].push_back({tok, b, parent.depth + 1, parent.score + lp, row});
        }
        ++row;
      }
      std::stable_sort(children.begin(), children.end(),
                       [&](int a, int b) { return nodes[i][a].score > nodes[i][b].score; });
      children.resize(std::min<size_t>(children.size(), size_t(k)));
      beam[i] = children;
    }
    rows_so_far += k;
  }
  // Keep the best num_draft_tokens - 1 nodes (a child never outscores its parent, and ties go to
  // the shallower node, so the set holds every kept node's ancestors), parents before children.
  for (size_t i = 0; i < R; ++i) {
    std::vector<int> order(nodes[i].size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const TreeNode &x = nodes[i][a], &y = nodes[i][b];
      return x.score > y.score || (x.score == y.score && x.depth < y.depth);
    });
    order.resize(std::min<size_t>(order.size(), size_t(opt_.num_draft_tokens - 1)));
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return nodes[i][a].depth < nodes[i][b].depth; });
    std::vector<int> index_of(nodes[i].size(), -1);
    DraftState& d = reqs[i]->draft;
    for (int id : order) {
      const TreeNode& n = nodes[i][id];
      DS_CHECK(n.parent < 0 || index_of[n.parent] >= 0, "draft tree lost the parent of a kept node");
      index_of[id] = int(d.tokens.size());
      d.tokens.push_back(n.token);
      d.parent.push_back(n.parent < 0 ? -1 : index_of[n.parent]);
      d.depth.push_back(n.depth);
    }
  }
}

}  // namespace dsserve
