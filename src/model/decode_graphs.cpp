// Decode, verify and draft forwards replayed from captured graphs (see decode_graphs.h).
#include "model/decode_graphs.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"

namespace dsserve {

std::vector<int> default_cuda_graph_batch_sizes(int max_bs) {
  std::vector<int> s;
  for (int b : {1, 2, 4, 8, 12})
    if (b < max_bs) s.push_back(b);
  for (int b = 16; b < max_bs; b += b < 256 ? 8 : 32) s.push_back(b);
  if (max_bs >= 1) s.push_back(max_bs);
  return s;
}

DecodeGraphs::DecodeGraphs(Backend& be, const LatentCache& cache, int32_t trash_slot, int64_t context_len,
                           std::vector<int> batch_sizes, const Body& body, DecodeGraphShape shape)
    : be_(be),
      cache_data_(cache.data.data()),
      page_size_(cache.page_size),
      trash_slot_(trash_slot),
      context_len_(context_len),
      q_(shape.tokens_per_seq),
      tree_(shape.tree),
      key_shift_(shape.key_shift),
      hidden_cols_(shape.hidden_cols),
      sizes_(std::move(batch_sizes)) {
  DS_CHECK(q_ >= 1 && (q_ == 1 || tree_), "CUDA graphs: {} tokens per sequence need tree masks", q_);
  std::sort(sizes_.begin(), sizes_.end());
  sizes_.erase(std::unique(sizes_.begin(), sizes_.end()), sizes_.end());
  DS_CHECK(!sizes_.empty() && sizes_.front() >= 1, "CUDA graphs: batch sizes must be at least 1");
  DS_CHECK(trash_slot >= 0 && int64_t(trash_slot) < cache.num_pages * cache.page_size,
           "CUDA graphs: trash slot {} outside the cache of {} slots", trash_slot, cache.num_pages * cache.page_size);
  const int max_bs = sizes_.back(), max_t = max_bs * q_;
  DS_CHECK(key_shift_ >= 0 && hidden_cols_ >= 0, "CUDA graphs: key shift {} and hidden width {}", key_shift_, hidden_cols_);
  max_pages_ = int((context_len + key_shift_ + page_size_ - 1) / page_size_);
  ids_ = be_.alloc(DType::I32, {max_t});
  positions_ = be_.alloc(DType::I32, {max_t});
  out_slots_ = be_.alloc(DType::I32, {max_t});
  seq_lens_ = be_.alloc(DType::I32, {max_bs});
  query_start_ = be_.alloc(DType::I32, {max_bs + 1});
  key_start_ = be_.alloc(DType::I32, {max_bs + 1});
  page_table_ = be_.alloc(DType::I32, {max_bs, max_pages_});
  // Until a batch is written, every row is padding: q keys in the trash page, all seen.
  std::vector<int32_t> starts(size_t(max_bs) + 1), lens(size_t(max_bs), q_), trash(size_t(max_t), trash_slot_),
      trash_page(size_t(max_bs) * size_t(max_pages_), trash_slot_ / page_size_);
  for (int i = 0; i <= max_bs; ++i) starts[size_t(i)] = i * q_;
  be_.write_i32(query_start_, starts.data(), 1, max_bs + 1, max_bs + 1);
  be_.write_i32(key_start_, starts.data(), 1, max_bs + 1, max_bs + 1);
  be_.write_i32(seq_lens_, lens.data(), 1, max_bs, max_bs);
  be_.write_i32(out_slots_, trash.data(), 1, max_t, max_t);
  be_.write_i32(page_table_, trash_page.data(), max_bs, max_pages_, max_pages_);
  if (tree_) {
    tree_mask_ = be_.alloc(DType::I32, {int64_t(max_t) * q_});
    mask_start_ = be_.alloc(DType::I32, {max_bs + 1});
    mask_cols_ = be_.alloc(DType::I32, {max_bs});
    std::vector<int32_t> mstart(size_t(max_bs) + 1), mcols(size_t(max_bs), q_), ones(size_t(max_t) * size_t(q_), 1);
    for (int i = 0; i <= max_bs; ++i) mstart[size_t(i)] = i * q_ * q_;
    be_.write_i32(mask_start_, mstart.data(), 1, max_bs + 1, max_bs + 1);
    be_.write_i32(mask_cols_, mcols.data(), 1, max_bs, max_bs);
    be_.write_i32(tree_mask_, ones.data(), 1, int64_t(ones.size()), int64_t(ones.size()));
  }

  if (hidden_cols_ > 0) hidden_ = be_.alloc(be_.activation_dtype(), {max_t, hidden_cols_});

  auto t0 = std::chrono::steady_clock::now();
  for (int bs : sizes_) {
    Graph g;
    g.batch_size = bs;
    AttentionBatch ab = batch_view(bs);
    Tensor ids = ids_.slice(0, 0, int64_t(bs) * q_);
    Tensor hidden = hidden_cols_ > 0 ? hidden_.slice(0, 0, int64_t(bs) * q_) : Tensor();
    g.forward = be_.capture([&] {
      g.out = {};  // both runs allocate alike
      g.out = body(ab, ids, hidden);
    });
    DS_CHECK(g.forward != nullptr, "CUDA graphs: the {} backend cannot record forwards", be_.name());
    graphs_.push_back(std::move(g));
  }
  be_.synchronize();
  capture_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

AttentionBatch DecodeGraphs::batch_view(int bs) const {
  AttentionBatch ab;
  const int T = bs * q_;
  ab.num_seqs = bs;
  ab.num_tokens = T;
  ab.page_size = page_size_;
  ab.max_pages = max_pages_;
  ab.positions = positions_.slice(0, 0, T);
  ab.out_slots = out_slots_.slice(0, 0, T);
  ab.query_start = query_start_.slice(0, 0, bs + 1);
  ab.seq_lens = seq_lens_.slice(0, 0, bs);
  ab.key_start = key_start_.slice(0, 0, bs + 1);
  ab.page_table = page_table_.slice(0, 0, bs);
  ab.h_query_start.resize(size_t(bs) + 1);
  for (int i = 0; i <= bs; ++i) ab.h_query_start[size_t(i)] = i * q_;
  ab.h_key_start = ab.h_query_start;
  ab.h_seq_lens.assign(size_t(bs), q_);
  ab.max_seq_len = int(context_len_);  // launches sized for any length
  ab.key_shift = key_shift_;
  if (tree_) {
    ab.tree_mask = tree_mask_.slice(0, 0, int64_t(T) * q_);
    ab.mask_start = mask_start_.slice(0, 0, bs + 1);
    ab.mask_cols = mask_cols_.slice(0, 0, bs);
    ab.h_mask_cols.assign(size_t(bs), q_);
    ab.h_mask_start.resize(size_t(bs) + 1);
    for (int i = 0; i <= bs; ++i) ab.h_mask_start[size_t(i)] = i * q_ * q_;
    ab.h_tree_mask.assign(size_t(T) * size_t(q_), 1);
  }
  return ab;
}

bool DecodeGraphs::covers(const ForwardBatch& b, const LatentCache& cache) const {
  const int B = b.num_seqs(), T = B * q_;
  if (B < 1 || B > sizes_.back() || b.num_tokens() != T || b.attention != AttentionMode::Absorbed ||
      b.tree_mask.empty() == tree_ || b.key_shift != key_shift_ || cache.data.data() != cache_data_ ||
      cache.page_size != page_size_ || b.max_pages > max_pages_ || int(b.logit_rows.size()) != T)
    return false;
  if (tree_ && (int64_t(b.tree_mask.size()) != int64_t(T) * q_ || int(b.mask_cols.size()) != B)) return false;
  for (int i = 0; i < B; ++i)
    if (b.query_start[size_t(i) + 1] != (i + 1) * q_ || b.prefix_lens[size_t(i)] + q_ > context_len_ ||
        (tree_ && b.mask_cols[size_t(i)] != q_))
      return false;
  for (int t = 0; t < T; ++t)
    if (b.logit_rows[size_t(t)] != t) return false;
  return true;
}

int DecodeGraphs::size_for(int num_seqs) const {
  auto it = std::lower_bound(sizes_.begin(), sizes_.end(), num_seqs);
  return it == sizes_.end() ? 0 : *it;
}

ForwardOutput DecodeGraphs::replay(const ForwardBatch& b, int batch_size, const Tensor* hidden) {
  const int B = b.num_seqs(), T = B * q_;
  DS_CHECK((hidden != nullptr) == (hidden_cols_ > 0), "CUDA graphs: these forwards {} previous hidden states",
           hidden_cols_ > 0 ? "take" : "take no");
  auto it = std::lower_bound(sizes_.begin(), sizes_.end(), std::max(B, batch_size));
  DS_CHECK(it != sizes_.end() && (batch_size == 0 || *it == batch_size),
           "CUDA graphs: no recorded batch size holds {} sequences{}", B,
           batch_size ? fmt::format(" at size {}", batch_size) : std::string());
  Graph& g = graphs_[size_t(it - sizes_.begin())];
  const int bs = g.batch_size, bt = bs * q_;
  std::vector<int32_t> ids(size_t(bt), 0), pos(size_t(bt), 0), slots(size_t(bt), trash_slot_), lens(size_t(bs), q_);
  for (int t = 0; t < T; ++t) {
    DS_CHECK(b.positions[size_t(t)] >= 0 && b.positions[size_t(t)] < context_len_,
             "token {} has position {} outside the context of {}", t, b.positions[size_t(t)], context_len_);
    ids[size_t(t)] = b.input_ids[size_t(t)];
    pos[size_t(t)] = b.positions[size_t(t)];
    slots[size_t(t)] = b.out_cache_slots[size_t(t)];
  }
  for (int i = 0; i < B; ++i) lens[size_t(i)] = b.prefix_lens[size_t(i)] + q_;
  be_.write_i32(ids_, ids.data(), 1, bt, bt);
  be_.write_i32(positions_, pos.data(), 1, bt, bt);
  be_.write_i32(out_slots_, slots.data(), 1, bt, bt);
  be_.write_i32(seq_lens_, lens.data(), 1, bs, bs);
  if (tree_) {  // the batch's masks, then all-ones masks for the padding sequences
    std::vector<int32_t> mask(size_t(bt) * size_t(q_), 1);
    for (size_t k = 0; k < b.tree_mask.size(); ++k) mask[k] = b.tree_mask[k];
    be_.write_i32(tree_mask_, mask.data(), 1, int64_t(mask.size()), int64_t(mask.size()));
  }
  // Page table: the batch's rows (only their first max_pages columns are read), then padding rows
  // whose one key is the trash slot.
  const int w = std::max(1, b.max_pages);
  h_pages_.assign(size_t(bs) * size_t(w), trash_slot_ / page_size_);
  std::copy(b.page_table.begin(), b.page_table.begin() + int64_t(B) * b.max_pages, h_pages_.begin());
  be_.write_i32(page_table_, h_pages_.data(), bs, w, w);
  if (hidden) {  // padding rows keep whatever they held: their results land in the trash page
    DS_CHECK(hidden->dtype() == hidden_.dtype() && hidden->ndim() == 2 && hidden->size(0) == T &&
                 hidden->size(1) == hidden_cols_,
             "CUDA graphs: expected [{}, {}] {} hidden states, found {} {}", T, hidden_cols_,
             dtype_name(hidden_.dtype()), dtype_name(hidden->dtype()), hidden->shape().str());
    Tensor rows = hidden_.slice(0, 0, T);
    be_.copy_into(rows, *hidden);
  }
  g.forward->replay();
  ++replays_;
  ForwardOutput out;
  out.logits = g.out.logits.slice(0, 0, T);
  out.hidden = g.out.hidden.slice(0, 0, T);
  return out;
}

}  // namespace dsserve
