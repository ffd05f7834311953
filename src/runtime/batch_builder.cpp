// ForwardBatch construction (see batch_builder.h).
#include "runtime/batch_builder.h"

#include <algorithm>

#include "core/error.h"

namespace dsserve {

ForwardBatch build_forward_batch(const std::vector<SequenceChunk>& chunks, const BatchLayout& L) {
  ForwardBatch b;
  b.attention = L.mode;
  b.key_shift = L.key_shift;
  b.query_start.push_back(0);
  bool any_mask = std::any_of(chunks.begin(), chunks.end(), [](auto& c) { return !c.tree_mask.empty(); });
  for (const auto& c : chunks) b.max_pages = std::max<int32_t>(b.max_pages, int32_t(c.pages->pages.size()));
  for (const auto& c : chunks) {
    const int64_t n = int64_t(c.tokens.size());
    int64_t end = c.prefix_len + n + L.key_shift;
    DS_CHECK(end <= int64_t(c.pages->pages.size()) * L.page_size, "sequence needs {} cache slots, has pages for {}",
             end, c.pages->pages.size() * L.page_size);
    DS_CHECK(c.positions.empty() || int64_t(c.positions.size()) == n, "{} positions for {} tokens", c.positions.size(), n);
    int32_t row0 = int32_t(b.input_ids.size());
    for (int64_t i = 0; i < n; ++i) {
      int64_t logical = c.prefix_len + i;
      b.input_ids.push_back(c.tokens[i]);
      b.positions.push_back(c.positions.empty() ? int32_t(logical) : c.positions[i]);
      b.out_cache_slots.push_back(logical < c.discard_before ? L.trash_slot
                                                             : c.pages->slot(logical + L.key_shift, L.page_size));
    }
    if (any_mask) {
      if (c.tree_mask.empty()) {  // causal, written out
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) b.tree_mask.push_back(j <= i);
        b.mask_cols.push_back(int32_t(n));
      } else {
        const int64_t cols = c.mask_cols > 0 ? c.mask_cols : n;
        DS_CHECK(int64_t(c.tree_mask.size()) == n * cols, "tree mask of {} entries for {} tokens x {} keys",
                 c.tree_mask.size(), n, cols);
        b.tree_mask.insert(b.tree_mask.end(), c.tree_mask.begin(), c.tree_mask.end());
        b.mask_cols.push_back(int32_t(cols));
      }
    }
    for (int32_t off : c.logit_offsets) b.logit_rows.push_back(row0 + off);
    b.query_start.push_back(int32_t(b.input_ids.size()));
    b.prefix_lens.push_back(int32_t(c.prefix_len));
    std::vector<int32_t> row(static_cast<size_t>(b.max_pages), 0);
    std::copy(c.pages->pages.begin(), c.pages->pages.end(), row.begin());
    b.page_table.insert(b.page_table.end(), row.begin(), row.end());
  }
  return b;
}

}  // namespace dsserve
