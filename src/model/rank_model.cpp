// One rank's model with its caches and recorded forwards (see rank_model.h).
#include "model/rank_model.h"

#include "core/error.h"

namespace dsserve {

RankModel::RankModel(const ModelConfig& cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                     const LoadOptions& opt)
    : be_(backend), model_(std::make_unique<DeepseekV3Model>(cfg, backend, weights, context_len, opt)) {}

RankModel::~RankModel() {
  // Recorded forwards and outputs before the caches and weights they refer to.
  decode_.reset();
  verify_.reset();
  draft_.reset();
  last_hidden_[0] = last_hidden_[1] = Tensor();
}

void RankModel::allocate_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) {
  // A new cache invalidates what was recorded over the old one.
  (mtp ? draft_ : decode_).reset();
  if (!mtp) verify_.reset();
  cache(mtp) = {};
  cache(mtp) = model_->allocate_cache(num_pages, page_size, mtp, dtype);
}

ForwardOutput RankModel::forward(const ForwardBatch& b) {
  last_hidden_[HiddenRows::Target] = Tensor();  // its memory back before this forward's
  ForwardOutput out;
  if (decode_ && model_->shard().attention_groups == 1 && decode_->covers(b, cache_))
    out = decode_->replay(b);
  else if (verify_ && verify_->covers(b, cache_))
    out = verify_->replay(b);
  else
    out = model_->forward(b, cache_);
  if (model_->has_mtp()) last_hidden_[HiddenRows::Target] = out.hidden;
  return out;
}

ForwardOutput RankModel::forward_all_groups(const ForwardBatch& b, std::span<const int32_t> group_tokens) {
  return model_->forward_all_groups(b, cache_, group_tokens);
}

ForwardOutput RankModel::forward_mtp(const ForwardBatch& b, const HiddenRows& prev) {
  DS_CHECK(model_->has_mtp(), "the model has no multi-token-prediction layer loaded");
  const Tensor& source = last_hidden_[prev.source];
  DS_CHECK(source.defined(), "forward_mtp: no {} forward has run yet to take hidden states from",
           prev.source == HiddenRows::Target ? "target" : "MTP");
  bool in_order = int64_t(prev.rows.size()) == source.size(0);
  for (size_t i = 0; i < prev.rows.size(); ++i) {
    DS_CHECK(prev.rows[i] >= 0 && prev.rows[i] < source.size(0), "forward_mtp: hidden-state row {} of {}",
             prev.rows[i], source.size(0));
    in_order = in_order && prev.rows[i] == int32_t(i);
  }
  // Gathered on the device into scratch memory (the source may be a recorded forward's output, which
  // its next replay overwrites).
  const Tensor hidden =
      in_order ? source : be_.gather_rows(source, be_.upload_i32(prev.rows, {int64_t(prev.rows.size())}));
  ForwardOutput out;
  if (draft_ && draft_->covers(b, mtp_cache_) && hidden.dtype() == be_.activation_dtype())
    out = draft_->replay(b, 0, &hidden);
  else
    out = model_->forward_mtp(b, hidden, mtp_cache_);
  last_hidden_[HiddenRows::Draft] = out.hidden;
  return out;
}

void RankModel::move_cache_slots(bool mtp, const std::vector<int32_t>& src, const std::vector<int32_t>& dst) {
  DS_CHECK(src.size() == dst.size(), "move_cache_slots: {} sources for {} destinations", src.size(), dst.size());
  Tensor s = be_.upload_i32(src, {int64_t(src.size())}), d = be_.upload_i32(dst, {int64_t(dst.size())});
  be_.move_cache_slots(cache(mtp).data, s, d);
}

bool RankModel::capture_graphs(const GraphPlan& plan) {
  decode_.reset();
  verify_.reset();
  draft_.reset();
  if (!be_.can_capture()) return false;
  DeepseekV3Model& m = *model_;
  const int64_t ctx = m.context_len();
  if (!plan.decode_sizes.empty())
    decode_ = std::make_unique<DecodeGraphs>(
        be_, cache_, plan.trash_slot, ctx, plan.decode_sizes,
        [&m, this](const AttentionBatch& ab, const Tensor& ids, const Tensor&) { return m.decode_rows(ab, ids, cache_); });
  if (plan.verify_tokens > 1 && !plan.verify_sizes.empty())
    verify_ = std::make_unique<DecodeGraphs>(
        be_, cache_, plan.trash_slot, ctx, plan.verify_sizes,
        [&m, this](const AttentionBatch& ab, const Tensor& ids, const Tensor&) { return m.decode_rows(ab, ids, cache_); },
        DecodeGraphShape{plan.verify_tokens, /*tree=*/true});
  if (mtp_cache_.data.defined() && m.has_mtp() && !plan.mtp_sizes.empty()) {
    DecodeGraphShape shape;
    shape.key_shift = 1;
    shape.hidden_cols = m.config().hidden_size;
    draft_ = std::make_unique<DecodeGraphs>(
        be_, mtp_cache_, plan.trash_slot, ctx, plan.mtp_sizes,
        [&m, this](const AttentionBatch& ab, const Tensor& ids, const Tensor& hidden) {
          return m.draft_rows(ab, ids, hidden, mtp_cache_);
        },
        shape);
  }
  return true;
}

RecordedGraphs RankModel::recorded_graphs() const {
  RecordedGraphs g;
  if (decode_) g.decode = decode_->batch_sizes(), g.decode_replays = decode_->replays();
  if (verify_) g.verify = verify_->batch_sizes(), g.verify_replays = verify_->replays();
  if (draft_) g.mtp = draft_->batch_sizes(), g.mtp_replays = draft_->replays();
  for (const auto* d : {decode_.get(), verify_.get(), draft_.get()})
    if (d) g.capture_s += d->capture_seconds();
  return g;
}

int RankModel::decode_graph_size(const ForwardBatch& b) const {
  if (!decode_) return 0;
  if (b.num_seqs() == 0) return decode_->batch_sizes().front();
  return decode_->covers(b, cache_) ? decode_->size_for(b.num_seqs()) : 0;
}

ForwardOutput RankModel::replay_decode_graph(const ForwardBatch& b, int batch_size) {
  DS_CHECK(decode_ != nullptr, "replay_decode_graph: no decode graphs recorded");
  return decode_->replay(b, batch_size);
}

}  // namespace dsserve
