// Memory plan (see memory_plan.h). How each checkpoint tensor is split:
// - embedding: replicated on every GPU, as the loader keeps it (a lookup is a gather; splitting it
//   would add a collective per forward);
// - lm_head: by vocabulary over the TP group (over the attention group's GPUs with DP attention);
// - attention: q_b_proj, kv_b_proj and o_proj by heads over the attention-TP GPUs; q_a_proj,
//   kv_a_proj_with_mqa and norms replicated;
// - dense MLP and shared experts: by intermediate columns over all TP GPUs;
// - routed experts: whole experts over --ep-size GPUs, each expert's columns over tp / ep within;
// - router, eh_proj, norms, biases: replicated.
#include "parallel/memory_plan.h"

#include <fmt/format.h>

#include "model/tensor_specs.h"

namespace dsserve {

namespace {
int64_t divisor_for(const std::string& name, const ModelConfig& cfg, const ParallelLayout& L) {
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (has("embed_tokens")) return 1;
  if (has("lm_head") || has("shared_head.head")) return L.dp_attention ? L.attention_tp() : L.tp;
  if (has("mlp.experts.")) return L.tp;  // ep whole experts x (tp / ep) column shards
  if (has("mlp.gate.") || has("eh_proj") || has("norm") || has("e_score_correction_bias")) return 1;
  if (has("q_b_proj") || has("kv_b_proj") || has("o_proj") || has("self_attn.q_proj")) return L.attention_tp();
  if (has("q_a_proj") || has("kv_a_proj_with_mqa")) return 1;
  if (has("mlp.")) return L.tp;  // dense MLP and shared experts
  return 1;
}
}  // namespace

MemoryPlan plan_memory(const ModelConfig& cfg, const MemoryPlanInput& in) {
  in.layout.validate(cfg.num_attention_heads, cfg.n_routed_experts, cfg.vocab_size);
  MemoryPlan p;
  for (const TensorSpec& s : model_tensor_specs(cfg, in.include_mtp && cfg.num_nextn_predict_layers > 0)) {
    if (s.shared) continue;  // the MTP layer reuses the target's embedding and head
    const int64_t bytes = s.shape.numel() * int64_t(dtype_size(spec_storage_dtype(cfg, s)));
    p.weight_bytes_total += bytes;
    p.weight_bytes_per_gpu += (bytes + divisor_for(s.name, cfg, in.layout) - 1) / divisor_for(s.name, cfg, in.layout);
  }
  const int layers = cfg.num_hidden_layers + (in.include_mtp ? cfg.num_nextn_predict_layers : 0);
  // MLA caches one latent per token and layer, shared by all heads: every GPU of an attention
  // group holds the group's whole latent cache.
  p.kv_bytes_per_token = int64_t(layers) * cfg.latent_dim() * in.kv_bytes_per_value;
  p.budget_bytes_per_gpu = int64_t(double(in.gpu_memory_bytes) * in.mem_fraction_static);
  const int64_t free_bytes = p.budget_bytes_per_gpu - p.weight_bytes_per_gpu;
  p.fits = free_bytes > 0;
  p.kv_tokens_per_gpu = p.fits ? free_bytes / p.kv_bytes_per_token : 0;
  p.kv_tokens_total = p.kv_tokens_per_gpu * (in.layout.dp_attention ? in.layout.dp : 1);
  return p;
}

std::string MemoryPlan::table() const {
  auto gib = [](int64_t b) { return double(b) / double(int64_t(1) << 30); };
  return fmt::format(
      "weights: {:.1f} GiB in the checkpoint, {:.2f} GiB on the fullest GPU\n"
      "budget per GPU (memory x --mem-fraction-static): {:.1f} GiB\n"
      "latent cache: {} bytes per token per GPU\n"
      "KV capacity: {} tokens per GPU, {} distinct tokens in all{}\n",
      gib(weight_bytes_total), gib(weight_bytes_per_gpu), gib(budget_bytes_per_gpu), kv_bytes_per_token,
      kv_tokens_per_gpu, kv_tokens_total, fits ? "" : "  (the weights do not fit)");
}

}  // namespace dsserve
