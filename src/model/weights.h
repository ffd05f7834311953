// The model's weights in backend layout, after the load-time transforms: q_a_proj (or q_proj) fused
// with kv_a_proj_with_mqa, gate and up fused, kv_b_proj kept for the expanded path and split into
// per-head W_UK / W_UV for the absorbed path, routed experts stacked.
#pragma once
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "io/model_config.h"
#include "model/weight_source.h"

namespace dsserve {

struct MlaWeights {
  LinearWeight qkv_a;                 // [q_part + kv_lora_rank + qk_rope, hidden]; q_part = q_lora_rank or n*qk_head_dim
  std::optional<Tensor> q_a_norm;     // [q_lora_rank] when q_lora_rank is set
  std::optional<LinearWeight> q_b;    // [n * qk_head_dim, q_lora_rank]
  Tensor kv_a_norm;                   // [kv_lora_rank]
  LinearWeight kv_b;                  // [n * (qk_nope + v_head), kv_lora_rank]
  HeadWeight w_uk_t;                  // [n, kv_lora_rank, qk_nope]: q_nope -> latent
  HeadWeight w_uv;                    // [n, v_head, kv_lora_rank]: latent -> v
  LinearWeight o_proj;                // [hidden, n * v_head]
};

struct MlpWeights {
  LinearWeight gate_up;  // [2 * inter, hidden]
  LinearWeight down;     // [hidden, inter]
};

struct MoeWeights {
  LinearWeight router;        // [experts, hidden], applied in float32
  Tensor score_bias;          // [experts] F32 (noaux_tc), undefined otherwise
  ExpertWeights experts;
  std::optional<MlpWeights> shared;
};

struct DecoderLayerWeights {
  Tensor input_norm, post_attention_norm;
  MlaWeights attn;
  std::optional<MlpWeights> mlp;  // dense layers
  std::optional<MoeWeights> moe;  // MoE layers
};

struct MtpWeights {  // one multi-token-prediction module (shares embedding and lm_head)
  Tensor enorm, hnorm;
  LinearWeight eh_proj;  // [hidden, 2 * hidden]
  DecoderLayerWeights layer;
  Tensor head_norm;      // shared_head.norm
};

struct ModelWeights {
  Tensor embed_tokens;  // [vocab, hidden]
  std::vector<DecoderLayerWeights> layers;
  Tensor final_norm;
  LinearWeight lm_head;
  std::vector<MtpWeights> mtp;  // empty when not loaded
};

// This process's part of a tensor-parallel model: rank `rank` of `world` holds heads
// [rank * n / world, (rank + 1) * n / world) of attention (q_b_proj and kv_b_proj rows, o_proj
// columns) and the same slice of every MLP's intermediate columns (gate/up rows, down columns),
// dense, shared and each routed expert alike, and the same slice of the lm_head's vocabulary
// rows. Everything else (q_a/kv_a, norms, router, embedding) is replicated. Block-FP8 weights keep FP8 where the slice starts on a
// 128-block boundary; other slices are dequantized to BF16 values.
struct ShardSpec {
  int rank = 0, world = 1;
  // Expert parallelism over the same ranks (--ep-size equal to --tp-size): each rank holds
  // n_routed_experts / world whole routed experts instead of a column slice of every expert.
  bool expert_parallel = false;
  // Data-parallel attention: the ranks form this many attention groups of world / attention_groups
  // consecutive ranks. Attention (q_b_proj, kv_b_proj, o_proj) and the lm_head's vocabulary split
  // over the ranks of one group (replicated across groups); the MLPs still split over all ranks.
  int attention_groups = 1;
  int attention_world() const { return world / attention_groups; }
  int attention_rank() const { return rank % attention_world(); }
  int attention_group() const { return rank / attention_world(); }
};

struct LoadOptions {
  ShardSpec shard;
  bool load_mtp = true;                  // load the MTP layers when the checkpoint has them
  WeightSource* mtp_weights = nullptr;   // read the MTP layers from here instead (a draft model)
};

// Loads every weight through the backend; prints a progress bar to stderr.
ModelWeights load_model_weights(const ModelConfig& cfg, WeightSource& src, Backend& backend,
                                const LoadOptions& opt = {});

}  // namespace dsserve
