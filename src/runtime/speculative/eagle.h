// EAGLE speculative decoding with the checkpoint's own multi-token-prediction (NextN) layer.
// Drafting: the MTP module combines the target's final hidden state at position t with the
// embedding of token t + 1 and predicts token t + 2; further steps feed it its own output hidden
// state and its own draft. Verification: one target forward over [last token, drafts...] per
// request (absorbed MLA), accepting the drafts the target itself would have produced. The MTP
// cache keeps position t's entry at the slot of token t + 1 (so whole cached pages stay valid
// for any request sharing them) and shares the target's page tables.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "model/deepseek_v3.h"
#include "runtime/request_state.h"

namespace dsserve {

struct SpeculativeOptions {
  std::string algorithm;     // "" (off), "EAGLE" or "NEXTN" (the same)
  int num_steps = 0;         // draft steps per round (0: default 3)
  int eagle_topk = 0;        // branches per step (0: default 1, a chain)
  int num_draft_tokens = 0;  // tokens verified per round, the last token included (0: num_steps + 1)
  bool enabled() const { return !algorithm.empty(); }
  // Fills unset values (0) with DeepSeek defaults (3, 1, 4) and checks the relations.
  void validate_and_default();
  // Extra cache positions one round may touch beyond a request's tokens (after validate_and_default):
  // up to num_steps + 1 accepted tokens, then the next round's verification or draft-tree MTP rows.
  int64_t cache_margin() const {
    return enabled() ? (num_steps + 1) + std::max<int64_t>(num_draft_tokens, int64_t(num_steps - 1) * eagle_topk + 2) + 1
                     : 0;
  }
};

// One MTP row: the target (or MTP) hidden state at `position` and the token at position + 1.
struct DraftRow {
  int64_t position;
  int32_t next_token;
};

class EagleWorker {
 public:
  // model: one device or tensor-parallel ranks (ModelRunner::forward_mtp); mtp_cache: allocated through it.
  EagleWorker(ModelRunner& model, LatentCache& mtp_cache, int32_t trash_slot, SpeculativeOptions opt);
  const SpeculativeOptions& options() const { return opt_; }

  // Runs the MTP over rows of several requests (rows[i]: request i's, consecutive positions; hidden:
  // the target's hidden state of every row, in row order), writing their MTP cache entries. Returns
  // for each request its last row's most likely draft tokens (the topk best (log-probability,
  // token) pairs, best first, ties lower id first; chosen on the device, so only they come back)
  // and the row of the MTP's output holding that row's hidden state (HiddenRows::Draft).
  using TopTokens = std::vector<std::pair<float, int32_t>>;
  struct LastRow {
    TopTokens top;
    int32_t hidden_row = 0;
  };
  std::vector<LastRow> extend(const std::vector<RequestState*>& reqs, const std::vector<std::vector<DraftRow>>& rows,
                              const HiddenRows& hidden);
  // From each request's extend result (the last MTP forward's), drafts the tree of its next
  // verification into req->draft: a chain of num_steps tokens (topk 1), or with topk > 1 a beam of
  // topk nodes expanded topk ways per step, keeping the num_draft_tokens - 1 nodes of highest
  // cumulative draft log-probability. The hidden states stay on the device.
  void draft(const std::vector<RequestState*>& reqs, std::vector<LastRow> last);
  int64_t cache_margin() const { return opt_.cache_margin(); }

 private:
  // The MTP forward over `chunks`: the topk best tokens of each logits row.
  std::vector<TopTokens> run(const std::vector<struct SequenceChunk>& chunks, const HiddenRows& hidden);
  void draft_chain(const std::vector<RequestState*>& reqs, std::vector<LastRow> last);
  void draft_tree(const std::vector<RequestState*>& reqs, std::vector<LastRow> last);

  ModelRunner& model_;
  LatentCache& mtp_cache_;
  int32_t trash_slot_;
  SpeculativeOptions opt_;
};

}  // namespace dsserve
