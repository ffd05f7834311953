// Checkpoint tensor names and shapes of DeepSeek-V3/V2 (see tensor_specs.h).
#include "model/tensor_specs.h"

namespace dsserve {

std::string layer_prefix(int layer) { return "model.layers." + std::to_string(layer) + "."; }

namespace {
struct SpecList {
  const ModelConfig& cfg;
  std::vector<TensorSpec>& out;
  bool mtp = false;

  void add(const std::string& name, Shape shape, TensorRole role, bool shared = false, int64_t fan_in = 0) {
    out.push_back({name, shape, role, mtp, shared, fan_in});
  }
  void linear(const std::string& name, int64_t out_f, int64_t in_f) {
    const std::string prefix = linear_prefix(name);
    if (cfg.quantized_as(QuantMethod::Awq)) {  // shapes rounded up; the loader reports sizes that do not divide
      const int64_t g = cfg.quantization->group_size, groups = (in_f + g - 1) / g, packed = (out_f + 7) / 8;
      add(prefix + "qweight", {in_f, packed}, TensorRole::AwqWeight, false, in_f);
      add(prefix + "qzeros", {groups, packed}, TensorRole::AwqZeros, false, in_f);
      add(prefix + "scales", {groups, out_f}, TensorRole::AwqScales, false, in_f);
      return;
    }
    add(name, {out_f, in_f}, TensorRole::Linear, false, in_f);
    if (!cfg.quantization) return;
    if (cfg.quantization->method == QuantMethod::ChannelInt8) {
      add(prefix + "weight_scale", {out_f, 1}, TensorRole::ChannelScale, false, in_f);
      return;
    }
    const int64_t bn = cfg.quantization->block_n, bk = cfg.quantization->block_k;
    add(prefix + "weight_scale_inv", {(out_f + bn - 1) / bn, (in_f + bk - 1) / bk}, TensorRole::Scale, false, in_f);
  }
  void mlp(const std::string& p, int64_t inter) {
    linear(p + "gate_proj.weight", inter, cfg.hidden_size);
    linear(p + "up_proj.weight", inter, cfg.hidden_size);
    linear(p + "down_proj.weight", cfg.hidden_size, inter);
  }
  void decoder_layer(int i) {
    const std::string p = layer_prefix(i), a = p + "self_attn.";
    const int64_t H = cfg.hidden_size, nh = cfg.num_attention_heads;
    add(p + "input_layernorm.weight", {H}, TensorRole::Norm);
    add(p + "post_attention_layernorm.weight", {H}, TensorRole::Norm);
    if (cfg.q_lora_rank) {
      linear(a + "q_a_proj.weight", *cfg.q_lora_rank, H);
      add(a + "q_a_layernorm.weight", {*cfg.q_lora_rank}, TensorRole::Norm);
      linear(a + "q_b_proj.weight", nh * cfg.qk_head_dim(), *cfg.q_lora_rank);
    } else {
      linear(a + "q_proj.weight", nh * cfg.qk_head_dim(), H);
    }
    linear(a + "kv_a_proj_with_mqa.weight", cfg.latent_dim(), H);
    add(a + "kv_a_layernorm.weight", {cfg.kv_lora_rank}, TensorRole::Norm);
    linear(a + "kv_b_proj.weight", nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank);
    linear(a + "o_proj.weight", H, nh * cfg.v_head_dim);
    const std::string m = p + "mlp.";
    if (!cfg.is_moe_layer(i)) {
      mlp(m, cfg.intermediate_size);
      return;
    }
    add(m + "gate.weight", {cfg.n_routed_experts, H}, TensorRole::Dense);
    if (cfg.topk_method == "noaux_tc") add(m + "gate.e_score_correction_bias", {cfg.n_routed_experts}, TensorRole::Bias);
    for (int e = 0; e < cfg.n_routed_experts; ++e) mlp(m + "experts." + std::to_string(e) + ".", cfg.moe_intermediate_size);
    if (cfg.n_shared_experts > 0)
      mlp(m + "shared_experts.", int64_t(cfg.moe_intermediate_size) * cfg.n_shared_experts);
  }
};
}  // namespace

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& cfg, bool include_mtp) {
  std::vector<TensorSpec> out;
  SpecList s{cfg, out};
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size;
  s.add("model.embed_tokens.weight", {V, H}, TensorRole::Embedding);
  for (int i = 0; i < cfg.num_hidden_layers; ++i) s.decoder_layer(i);
  s.add("model.norm.weight", {H}, TensorRole::Norm);
  if (!cfg.tie_word_embeddings) s.add("lm_head.weight", {V, H}, TensorRole::Dense);
  if (!include_mtp) return out;
  s.mtp = true;
  for (int j = 0; j < cfg.num_nextn_predict_layers; ++j) {
    int i = cfg.num_hidden_layers + j;
    const std::string p = layer_prefix(i);
    s.add(p + "embed_tokens.weight", {V, H}, TensorRole::Embedding, /*shared=*/true);
    s.add(p + "enorm.weight", {H}, TensorRole::Norm);
    s.add(p + "hnorm.weight", {H}, TensorRole::Norm);
    s.add(p + "eh_proj.weight", {H, 2 * H}, TensorRole::Dense);
    s.decoder_layer(i);
    s.add(p + "shared_head.norm.weight", {H}, TensorRole::Norm);
    s.add(p + "shared_head.head.weight", {V, H}, TensorRole::Dense, /*shared=*/true);
  }
  return out;
}

DType spec_storage_dtype(const ModelConfig& cfg, const TensorSpec& spec) {
  switch (spec.role) {
    case TensorRole::Linear:  // (in an AWQ config: a projection the quantizer left in BF16)
      if (!cfg.quantization || cfg.quantization->method == QuantMethod::Awq) return DType::BF16;
      return cfg.quantization->method == QuantMethod::Fp8 ? DType::F8_E4M3 : DType::I8;
    case TensorRole::Bias:
    case TensorRole::Scale:
    case TensorRole::ChannelScale: return DType::F32;
    case TensorRole::AwqWeight:
    case TensorRole::AwqZeros: return DType::I32;
    case TensorRole::AwqScales: return DType::F16;
    default: return DType::BF16;
  }
}

std::string linear_prefix(const std::string& weight_name) {
  const std::string suffix = "weight";
  return weight_name.ends_with(suffix) ? weight_name.substr(0, weight_name.size() - suffix.size()) : weight_name + ".";
}

}  // namespace dsserve
