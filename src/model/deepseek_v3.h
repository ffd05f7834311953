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
#include "model/forward_batch.h"
#include "model/model_runner.h"
#include "model/weights.h"

namespace dsserve {

// The forward alone: the caches it reads and writes, the recorded forwards and the hidden states an
// MTP step takes belong to the runner (model/rank_model.h holds one rank's).
class DeepseekV3Model {
 public:
  // context_len bounds positions (the RoPE table size).
  DeepseekV3Model(ModelConfig cfg, Backend& backend, WeightSource& weights, int64_t context_len,
                  const LoadOptions& opt = {});
  ~DeepseekV3Model();

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return be_; }
  int64_t context_len() const { return context_len_; }
  bool has_mtp() const { return !w_.mtp.empty(); }
  const ShardSpec& shard() const { return shard_; }  // this rank's part of a tensor-parallel model

  // A latent cache for the target's layers (mtp = false) or the MTP layers (mtp = true), of element
  // type dtype (model/kv_cache_dtype.h; unset: the backend's activation type).
  LatentCache allocate_cache(int64_t num_pages, int page_size, bool mtp = false,
                             std::optional<DType> dtype = std::nullopt);

  // One forward of `batch` over `cache`, run as it comes (no recorded graph): the logits of the
  // batch's logit rows and the final hidden states of every row. Valid until the next forward.
  ForwardOutput forward(const ForwardBatch& batch, LatentCache& cache);
  // Data-parallel attention (ShardSpec::attention_groups > 1): this rank's group runs `batch` (no
  // sequences when the group has no work) while group_tokens[g] is the token count of group g's
  // batch in the same round; every rank of every group calls it together. Empty output when the
  // batch is empty.
  ForwardOutput forward_all_groups(const ForwardBatch& batch, LatentCache& cache, std::span<const int32_t> group_tokens);
  // The first MTP module: row t combines prev_hidden's row t ([T, hidden] on this model's device: the
  // target's final hidden state at the position before, or an earlier draft step's) with the
  // embedding of batch.input_ids[t].
  ForwardOutput forward_mtp(const ForwardBatch& batch, const Tensor& prev_hidden, LatentCache& mtp_cache);
  // Throws naming the field when `batch` cannot run over a cache of this page size (what a forward
  // checks before it uploads anything).
  void check_batch(const ForwardBatch& batch, int page_size) const;

  // What a recorded forward runs (model/decode_graphs.h), over rows already on the device, every row
  // a logit row, absorbed attention: the decoder (decode and verify) and one MTP draft step.
  ForwardOutput decode_rows(const AttentionBatch& ab, const Tensor& ids, LatentCache& cache);
  ForwardOutput draft_rows(const AttentionBatch& ab, const Tensor& ids, const Tensor& prev_hidden,
                           LatentCache& mtp_cache);

  // Decoder layers run so far plus the backend's own count (Backend::progress), readable from any
  // thread: a long forward's sign of life for the watchdog.
  int64_t progress() const { return layers_run_.load(std::memory_order_relaxed) + be_.progress(); }

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
  std::atomic<int64_t> layers_run_{0};  // see progress()
};

}  // namespace dsserve
