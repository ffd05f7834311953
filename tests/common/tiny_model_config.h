// A small DeepSeek-V3-shaped config for tests that need a model but not the fixtures: every
// feature of the architecture (q_lora, yarn, noaux_tc groups, shared expert, dense first layer, MTP)
// at sizes that run in milliseconds on the CPU backend.
#pragma once
#include <nlohmann/json.hpp>

namespace dsserve::test {

inline nlohmann::json tiny_model_config() {
  return {{"architectures", {"DeepseekV3ForCausalLM"}}, {"model_type", "deepseek_v3"}, {"vocab_size", 512},
          {"hidden_size", 128}, {"intermediate_size", 192}, {"moe_intermediate_size", 64},
          {"num_hidden_layers", 3}, {"num_nextn_predict_layers", 1}, {"num_attention_heads", 4},
          {"num_key_value_heads", 4}, {"q_lora_rank", 96}, {"kv_lora_rank", 64}, {"qk_nope_head_dim", 32},
          {"qk_rope_head_dim", 16}, {"v_head_dim", 32}, {"n_routed_experts", 8}, {"n_shared_experts", 1},
          {"num_experts_per_tok", 2}, {"n_group", 4}, {"topk_group", 2}, {"first_k_dense_replace", 1},
          {"norm_topk_prob", true}, {"routed_scaling_factor", 2.5}, {"scoring_func", "sigmoid"},
          {"topk_method", "noaux_tc"}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000},
          {"rope_scaling", {{"type", "yarn"}, {"factor", 40}, {"original_max_position_embeddings", 4096},
                            {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}}},
          {"max_position_embeddings", 163840}, {"bos_token_id", 0}, {"eos_token_id", 1}};
}

}  // namespace dsserve::test
