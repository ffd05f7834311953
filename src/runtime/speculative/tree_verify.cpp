// Draft-tree verification (see tree_verify.h).
#include "runtime/speculative/tree_verify.h"

#include <algorithm>

namespace dsserve {

SequenceChunk verify_chunk(const RequestState& r) {
  const DraftState& d = r.draft;
  const size_t n = d.tokens.size() + 1;
  SequenceChunk c{&r.pages, r.kv_len, {r.output_ids.back()}, {}};
  c.tokens.insert(c.tokens.end(), d.tokens.begin(), d.tokens.end());
  c.positions.push_back(int32_t(r.kv_len));
  for (int32_t dep : d.depth) c.positions.push_back(int32_t(r.kv_len + dep));
  c.tree_mask.assign(n * n, 0);
  for (size_t a = 0; a < n; ++a) {
    c.tree_mask[a * n] = 1;  // every node sees the root
    for (int x = int(a) - 1; x >= 0; x = d.parent[size_t(x)]) c.tree_mask[a * n + size_t(x) + 1] = 1;
  }
  for (int32_t j = 0; j < int32_t(n); ++j) c.logit_offsets.push_back(j);
  return c;
}

void append_verify_rows(RequestState& r, TokenChooser& chooser, ConstraintMasks& masks,
                        std::deque<SamplingRowLists>& lists, std::vector<SamplingRow>& rows) {
  const SamplingState& st = chooser.sampling_state(r);
  const DraftState& d = r.draft;
  rows.push_back(TokenChooser::with_logprobs(r, st.row()));
  masks.apply(r, {}, chooser.eos(), rows.back());
  for (size_t x = 0; x < d.tokens.size(); ++x) {
    std::vector<int32_t> path;  // the node's ancestors below the root, then the node
    for (int y = int(x); y >= 0; y = d.parent[size_t(y)]) path.push_back(d.tokens[size_t(y)]);
    std::reverse(path.begin(), path.end());
    rows.push_back(TokenChooser::with_logprobs(r, st.row_after(path, lists.emplace_back())));
    masks.apply(r, path, chooser.eos(), rows.back());  // the grammar as if the path were accepted
  }
}

std::vector<int> acceptance_walk(const DraftState& d, std::span<const SampledToken> picked) {
  std::vector<int> rows;
  int node = -1;  // -1: the root (row 0); node x is row x + 1
  while (true) {
    rows.push_back(node + 1);
    const int32_t tok = picked[size_t(node + 1)].token;
    int child = -1;
    for (size_t x = 0; x < d.tokens.size() && child < 0; ++x)
      if (d.parent[x] == node && d.tokens[x] == tok) child = int(x);
    if (child < 0) return rows;
    node = child;
  }
}

}  // namespace dsserve
