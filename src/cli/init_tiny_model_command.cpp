// `dsserve init-tiny-model DIR`: writes a small random-weight checkpoint in the published
// DeepSeek-V3 layout (config.json, two safetensors shards, model.safetensors.index.json; with
// --fp8 block-FP8 weights and weight_scale_inv), with DeepSeek-V3's vocabulary and its tokenizer
// files beside it, so text works end to end (`make run MODEL=models/tiny-random` serves one).
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/error.h"
#include "io/model_config.h"
#include "model/checkpoint_writer.h"

namespace fs = std::filesystem;

namespace dsserve {

namespace {
struct InitOptions {
  std::string dir;
  bool fp8 = false;
  uint64_t seed = 0;
  std::string tokenizer_dir;
  std::string overrides;
};

ModelConfig tiny_config(bool fp8) {
  nlohmann::json c = {
      {"architectures", {"DeepseekV3ForCausalLM"}}, {"model_type", "deepseek_v3"}, {"vocab_size", 129280},
      {"hidden_size", 256}, {"intermediate_size", 384}, {"moe_intermediate_size", 128}, {"num_hidden_layers", 3},
      {"num_nextn_predict_layers", 1}, {"num_attention_heads", 4}, {"num_key_value_heads", 4}, {"q_lora_rank", 192},
      {"kv_lora_rank", 128}, {"qk_nope_head_dim", 64}, {"qk_rope_head_dim", 32}, {"v_head_dim", 64},
      {"n_routed_experts", 16}, {"n_shared_experts", 1}, {"num_experts_per_tok", 4}, {"n_group", 4},
      {"topk_group", 2}, {"first_k_dense_replace", 1}, {"moe_layer_freq", 1}, {"norm_topk_prob", true},
      {"routed_scaling_factor", 2.5}, {"scoring_func", "sigmoid"}, {"topk_method", "noaux_tc"},
      {"hidden_act", "silu"}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000},
      {"rope_scaling", {{"type", "yarn"}, {"factor", 40}, {"original_max_position_embeddings", 4096},
                        {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}}},
      {"max_position_embeddings", 163840}, {"tie_word_embeddings", false}, {"bos_token_id", 0},
      {"eos_token_id", 1}, {"torch_dtype", "bfloat16"}, {"attention_bias", false}, {"use_cache", true}};
  if (fp8)
    c["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                {"weight_block_size", {128, 128}}};
  return ModelConfig::parse(c.dump(), "tiny config");
}

void run(const InitOptions& o) {
  ModelConfig cfg = tiny_config(o.fp8);
  if (!o.overrides.empty()) cfg = ModelConfig::parse(cfg.to_json().dump(), "tiny config", o.overrides);
  write_random_checkpoint(o.dir, cfg, o.seed);
  if (!o.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::path src = fs::path(o.tokenizer_dir) / f;
      DS_CHECK(fs::exists(src), "--tokenizer-dir: {} not found", src.string());
      fs::copy_file(src, fs::path(o.dir) / f, fs::copy_options::overwrite_existing);
    }
  }
  spdlog::info("wrote a random {} checkpoint{} to {}", cfg.architecture, o.fp8 ? " (block-FP8)" : "", o.dir);
}
}  // namespace

void add_init_tiny_model_command(CLI::App& app) {
  auto opt = std::make_shared<InitOptions>();
  CLI::App* sub = app.add_subcommand("init-tiny-model", "Write a small random DeepSeek-V3 checkpoint");
  sub->add_option("dir", opt->dir, "Output directory")->required();
  sub->add_flag("--fp8", opt->fp8, "Block-FP8 weights with weight_scale_inv, as the published checkpoint");
  sub->add_option("--seed", opt->seed, "Random seed")->capture_default_str();
  sub->add_option("--tokenizer-dir", opt->tokenizer_dir, "Copy tokenizer.json and tokenizer_config.json from here");
  sub->add_option("--json-model-override-args", opt->overrides, "JSON object overriding config fields");
  sub->callback([opt] { run(*opt); });
}

}  // namespace dsserve
