// GPU models and listed configurations (see gpu_configs.h).
#include "parallel/gpu_configs.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dsserve {

const std::vector<GpuModel>& gpu_models() {
  // Total memory as the driver reports it (cudaMemGetInfo): 80 GB parts about 79.2 GiB; the H200
  // 139.8 GiB (measured on the H200 of docs/cuda-backend.md); the A100 40GB 39.5 GiB.
  static const std::vector<GpuModel> models = {
      {"a100-80g", "A100 80GB", 79.2},
      {"a100-40g", "A100 40GB", 39.5},
      {"h100", "H100 80GB", 79.2},
      {"h200", "H200 141GB", 139.8},
  };
  return models;
}

const GpuModel& gpu_model(const std::string& name) {
  std::string names;
  for (const auto& g : gpu_models()) {
    if (g.name == name) return g;
    names += (names.empty() ? "" : ", ") + g.name;
  }
  fail("--gpu: expected one of {}, found '{}'", names, name);
}

ModelConfig with_weights(ModelConfig cfg, const std::string& weights) {
  if (weights == "bf16") {
    cfg.quantization.reset();
  } else {
    Quantization q;  // the published checkpoints' settings (AWQ: group 128)
    if (weights == "fp8") q.method = QuantMethod::Fp8;
    else if (weights == "awq") q.method = QuantMethod::Awq;
    else if (weights == "int8") q.method = QuantMethod::ChannelInt8;
    else fail("weights '{}': expected bf16, fp8, awq or int8", weights);
    q.in_config = false;
    cfg.quantization = q;
  }
  return cfg;
}

std::vector<ListedConfig> sglang_configs(const GpuModel& gpu) {
  // SGLang's DeepSeek-V3/R1 page: FP8 on 8 x H200 or 2 x 8 x H100; BF16 on 2 x 8 x H200, 4 x 8 x H100
  // or 4 x 8 x A100; AWQ on 8 x H100 or 8 x A100; INT8 on 16 x A100.
  if (gpu.name == "h200") return {{"fp8", 8}, {"bf16", 16}};
  if (gpu.name == "h100") return {{"fp8", 16}, {"bf16", 32}, {"awq", 8}};
  return {{"bf16", 32}, {"awq", 8}, {"int8", 16}};  // the A100s (FP8 is not listed for them)
}

std::string why_not_fit(const MemoryPlan& p, const MemoryPlanInput& in, const std::string& gpu_label) {
  if (p.fits) return {};
  auto gib = [](int64_t b) { return double(b) / double(int64_t(1) << 30); };
  return fmt::format("{:.1f} GiB of weights on the fullest GPU exceed the {:.1f} GiB budget per {} ({:.1f} GiB x "
                     "--mem-fraction-static {}), leaving no room for the KV cache",
                     gib(p.weight_bytes_per_gpu), gib(p.budget_bytes_per_gpu), gpu_label,
                     gib(in.gpu_memory_bytes), in.mem_fraction_static);
}

int smallest_fitting_tp(const ModelConfig& cfg, MemoryPlanInput in) {
  in.layout = ParallelLayout{};
  for (int tp = 2; tp <= 256; tp *= 2) {
    in.layout.tp = tp;
    if (cfg.num_attention_heads % tp != 0) break;  // heads split over the GPUs
    if (plan_memory(cfg, in).fits) return tp;
  }
  return 0;
}

}  // namespace dsserve
