// ForwardBatch construction (see batch_builder.h).
#include "runtime/batch_builder.h"

#include <algorithm>

#include "core/error.h"

namespace dsserve {

ForwardBatch build_forward_batch(const std::vector<SequenceChunk>& chunks, int page_size, AttentionMode mode) {
  ForwardBatch b;
  b.attention = mode;
  b.query_start.push_back(0);
  for (const auto& c : chunks) b.max_pages = std::max<int32_t>(b.max_pages, int32_t(c.pages->pages.size()));
  for (const auto& c : chunks) {
    int64_t end = c.prefix_len + int64_t(c.tokens.size());
    DS_CHECK(end <= int64_t(c.pages->pages.size()) * page_size, "sequence needs {} cache slots, has pages for {}", end,
             c.pages->pages.size() * page_size);
    int32_t row0 = int32_t(b.input_ids.size());
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      int64_t pos = c.prefix_len + int64_t(i);
      b.input_ids.push_back(c.tokens[i]);
      b.positions.push_back(int32_t(pos));
      b.out_cache_slots.push_back(c.pages->slot(pos, page_size));
    }
    for (int32_t off : c.logit_offsets) b.logit_rows.push_back(row0 + off);
    b.query_start.push_back(int32_t(b.input_ids.size()));
    b.prefix_lens.push_back(int32_t(c.prefix_len));
    std::vector<int32_t> row(size_t(b.max_pages), 0);
    std::copy(c.pages->pages.begin(), c.pages->pages.end(), row.begin());
    b.page_table.insert(b.page_table.end(), row.begin(), row.end());
  }
  return b;
}

}  // namespace dsserve
