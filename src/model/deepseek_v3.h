// The DeepSeek-V3 model (DeepseekV3ForCausalLM, also DeepSeek-V2): the forward as a composition of
// backend ops, over a flat ForwardBatch and the paged latent cache, plus the MTP (NextN) module.
// No threads, no scheduling, no device code here.
#pragma once
#include <atomic>
#include <memory>
#include <optional>
#include <span>

#include "backend/backend.h"
#include "io/model_config.h"
#include "model/decode_graphs.h"
#include "model/forward_batch.h"
#include "model/model_runner.h"
#include "model/weights.h"

namespace dsserve {

class DeepseekV3Model final : public ModelRunner {
 public:
  // context_len bounds positions (the RoPE table size).
  DeepseekV3Model(ModelConfig cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                  const LoadOptions& opt = {});
  ~DeepseekV3Model() override;

  const ModelConfig& config() const override { return cfg_; }
  Backend& backend() override { return be_; }
  int64_t context_len() const override { return context_len_; }
  bool has_mtp() const override { return !w_.mtp.empty(); }
  const ShardSpec& shard() const { return shard_; }  // this rank's part of a tensor-parallel model

  // A latent cache for the target's layers (mtp = false) or the MTP layers (mtp = true), of element
  // type dtype (model/kv_cache_dtype.h; unset: the backend's activation type).
  LatentCache allocate_cache(int64_t num_pages, int page_size, bool mtp = false,
                             std::optional<DType> dtype = std::nullopt);
  LatentCache make_cache(int64_t num_pages, int page_size, bool mtp, std::optional<DType> dtype) override {
    return allocate_cache(num_pages, page_size, mtp, dtype);
  }

  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache) override;
  // Data-parallel attention (ShardSpec::attention_groups > 1): this rank's group runs `batch` (no
  // sequences when the group has no work) while group_tokens[g] is the token count of group g's
  // batch in the same round; every rank of every group calls it together. Empty output when the
  // batch is empty.
  ForwardOutput forward_all_groups(const ForwardBatch& batch, LatentCache& cache, std::span<const int32_t> group_tokens);
  // Data-parallel decode through CUDA graphs: the recorded size a decode batch of this group replays
  // at (0: not recordable: the round runs eagerly), and the replay of `batch` (no sequences: all
  // padding) at a size every group of the round uses, each group's rows padded to it.
  int decode_graph_size(const ForwardBatch& batch, const LatentCache& cache) const;
  // Throws naming the field when `batch` cannot run over a cache of this page size (what a forward
  // checks before it uploads anything).
  void check_batch(const ForwardBatch& batch, int page_size) const;
  ForwardOutput replay_decode_graph(const ForwardBatch& batch, int batch_size);
  // Every kind of `plan` (see ModelRunner::capture_graphs), through the three below.
  bool capture_graphs(const GraphPlan& plan, LatentCache& cache, LatentCache& mtp_cache) override;
  RecordedGraphs recorded_graphs() const override;
  bool capture_decode_graphs(LatentCache& cache, int32_t trash_slot, const std::vector<int>& batch_sizes);
  std::vector<int> decode_graph_sizes() const;
  std::string device_fatal_error() override { return be_.fatal_error(); }
  int64_t progress() const override { return layers_run_.load(std::memory_order_relaxed) + be_.progress(); }
  double decode_graph_capture_seconds() const;
  int64_t decode_graph_replays() const { return graphs_ ? graphs_->replays() : 0; }
  // Records EAGLE's verify forward (tokens_per_seq tokens per sequence with tree masks) at these
  // batch sizes, as capture_decode_graphs does for decode. False when the backend cannot record.
  bool capture_verify_graphs(LatentCache& cache, int32_t trash_slot, const std::vector<int>& batch_sizes,
                             int tokens_per_seq);
  std::vector<int> verify_graph_sizes() const { return verify_graphs_ ? verify_graphs_->batch_sizes() : std::vector<int>{}; }
  int64_t verify_graph_replays() const { return verify_graphs_ ? verify_graphs_->replays() : 0; }
  // Records one MTP draft step (one token per sequence over the MTP cache, previous hidden states
  // in the activation dtype) at these batch sizes; forward_mtp replays it for such batches. False
  // when it cannot.
  bool capture_mtp_graphs(LatentCache& mtp_cache, int32_t trash_slot, const std::vector<int>& batch_sizes);
  std::vector<int> mtp_graph_sizes() const { return mtp_graphs_ ? mtp_graphs_->batch_sizes() : std::vector<int>{}; }
  int64_t mtp_graph_replays() const { return mtp_graphs_ ? mtp_graphs_->replays() : 0; }
  // The first MTP module: row t combines the hidden state prev_hidden names (the target's final
  // hidden state at the position before, or an earlier draft step's) with the embedding of
  // batch.input_ids[t].
  ForwardOutput forward_mtp(const ForwardBatch& batch, const HiddenRows& prev_hidden, LatentCache& mtp_cache) override;
  // As above with the previous hidden states given: [T, hidden] on this model's device.
  ForwardOutput forward_mtp(const ForwardBatch& batch, const Tensor& prev_hidden, LatentCache& mtp_cache);

 private:
  AttentionBatch upload(const ForwardBatch& b, int page_size);
  // Embedding, the decoder layers and the final norm over every row of ab: the final hidden states.
  Tensor decoder(const AttentionBatch& ab, const Tensor& ids, AttentionMode mode, LatentCache& cache);
  Tensor attention(const Activation& x, const MlaWeights& w, const AttentionBatch& ab, AttentionMode mode,
                   Tensor layer_cache);
  // The MTP module over every row of ab: its output hidden states after the head norm.
  Tensor mtp_layer(const AttentionBatch& ab, const Tensor& ids, const Tensor& prev_hidden, AttentionMode mode,
                   LatentCache& cache);
  // x: the normed rows with, on backends running W8A8 products, their FP8 quantization made by the norm.
  Tensor feed_forward(const Activation& x, const DecoderLayerWeights& w);
  Tensor feed_forward_part(const Activation& x, const DecoderLayerWeights& w);
  Tensor feed_forward_all_groups(const Activation& x, const DecoderLayerWeights& w);
  Tensor mlp(const Activation& x, const MlpWeights& w);
  Tensor logits(const Tensor& normed, const ForwardBatch& b);
  Tensor lm_head(const Tensor& rows);  // every rank's vocabulary slice gathered

  ModelConfig cfg_;
  Backend& be_;
  int64_t context_len_;
  ModelWeights w_;
  Tensor rope_table_;
  RouterParams router_;
  float softmax_scale_;
  ShardSpec shard_;
  int64_t local_heads_ = 0;  // attention heads on this rank
  std::vector<int32_t> group_tokens_;  // data-parallel attention: tokens of each group this round
  std::unique_ptr<DecodeGraphs> graphs_, verify_graphs_, mtp_graphs_;
  std::atomic<int64_t> layers_run_{0};  // see progress()
  Tensor last_hidden_[2];               // the last forward's and forward_mtp's final hidden states (HiddenRows)
};

}  // namespace dsserve
