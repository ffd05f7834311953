// ModelConfig: the fields of a DeepSeek-V3 / V2 checkpoint's config.json, parsed and validated.
// Unknown model types and unsupported values are errors naming the field.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace dsserve {

struct RopeScaling {      // rope_scaling of type "yarn"
  double factor = 1.0;
  int original_max_position_embeddings = 4096;
  double beta_fast = 32, beta_slow = 1;
  double mscale = 1.0, mscale_all_dim = 0.0;
};

// How the checkpoint stores its linear weights (quantization_config.quant_method, or --quantization).
enum class QuantMethod : uint8_t {
  Fp8,          // "fp8": weight F8_E4M3 [out, in], weight_scale_inv F32 per 128x128 block
  BlockInt8,    // "blockwise_int8": weight I8 [out, in], weight_scale_inv F32 per 128x128 block (a multiplier)
  ChannelInt8,  // "w8a8_int8": weight I8 [out, in], weight_scale F32 [out, 1]
  Awq,          // "awq" (AutoAWQ gemm): qweight I32 [in, out/8], qzeros I32 [in/G, out/8], scales F16 [in/G, out]
};
// SGLang's spelling of each method ("fp8", "blockwise_int8", "w8a8_int8", "awq").
const char* quant_method_name(QuantMethod m);

struct Quantization {  // quantization_config, or what --quantization says of a checkpoint without one
  QuantMethod method = QuantMethod::Fp8;
  std::string fmt = "e4m3";                   // fp8
  std::string activation_scheme = "dynamic";  // fp8, blockwise_int8
  int block_n = 128, block_k = 128;           // fp8, blockwise_int8: weight_block_size [out, in]
  int bits = 4, group_size = 128;             // awq
  bool zero_point = true;                     // awq
  std::string version = "gemm";               // awq
  bool in_config = true;  // false: config.json has no quantization_config (set from --quantization)

  bool block_scaled() const { return method == QuantMethod::Fp8 || method == QuantMethod::BlockInt8; }
};

struct ModelConfig {
  std::string model_type;          // "deepseek_v3" or "deepseek_v2"
  std::string architecture;        // architectures[0]
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;       // dense MLP
  int moe_intermediate_size = 0;   // per routed / shared expert
  int num_hidden_layers = 0;
  int num_nextn_predict_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  std::optional<int> q_lora_rank;  // absent or null: plain q_proj
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  int n_routed_experts = 0;        // 0: every layer dense
  int n_shared_experts = 0;
  int num_experts_per_tok = 0;
  int n_group = 1;
  int topk_group = 1;
  int first_k_dense_replace = 0;
  int moe_layer_freq = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  std::string scoring_func = "softmax";  // "sigmoid" (V3) or "softmax" (V2)
  std::string topk_method = "greedy";    // "noaux_tc" (V3), "greedy" / "group_limited_greedy" (V2)
  std::string hidden_act = "silu";
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  int max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  int bos_token_id = 0;
  int eos_token_id = 1;
  std::string torch_dtype = "bfloat16";
  std::optional<Quantization> quantization;  // absent: BF16 weights

  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // cached values per token and layer
  bool is_moe_layer(int layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  // Softmax scale of attention: qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 under yarn.
  double softmax_scale() const;

  bool quantized_as(QuantMethod m) const { return quantization && quantization->method == m; }

  // Parses config.json text; `source` names the file in errors. `overrides` (a JSON object, as
  // --json-model-override-args) is merged over the file's top-level fields before validation.
  // `quantization` is the --quantization flag (see apply_quantization_flag).
  static ModelConfig parse(const std::string& json_text, const std::string& source,
                           const std::string& overrides = "", const std::string& quantization = "");
  static ModelConfig load(const std::string& model_dir, const std::string& overrides = "",
                          const std::string& quantization = "");
  // --quantization NAME (SGLang's names: fp8, blockwise_int8, w8a8_int8, awq and its aliases
  // awq_marlin and moe_wna16; empty: nothing to do). It must agree with quantization_config when the
  // checkpoint has one (an error names both otherwise); without one, w8a8_int8 and blockwise_int8
  // say how the checkpoint is stored (the published channel-INT8 checkpoints carry no
  // quantization_config), and the others are errors (their checkpoints always state it).
  // generated: there is no checkpoint (--load-format dummy, plan-memory): the flag says how the
  // weights are stored, in place of quantization_config (AWQ: group_size 128).
  void apply_quantization_flag(const std::string& quantization, const std::string& source, bool generated = false);
  nlohmann::json to_json() const;  // the config.json form (for init-tiny-model)
  void validate(const std::string& source) const;
};

}  // namespace dsserve
