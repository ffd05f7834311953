// `dsserve plan-memory`: the memory plan of a model under a parallel layout, without a GPU:
// weight bytes per GPU and KV capacity at --mem-fraction-static, e.g. for the full DeepSeek-V3
// (configs/deepseek-v3) under TP8 or DP8 attention + EP8 on 8 H200s, or its AWQ form on 8 H100s
// (--quantization awq --gpu h100); a layout that does not fit is refused with the reason. --gpu names
// the GPU model (its memory); --sglang-configs plans the configurations SGLang lists for that GPU
// model (e.g. BF16 on 32 x A100 80GB) instead.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "io/model_config.h"
#include "parallel/gpu_configs.h"
#include "parallel/memory_plan.h"

namespace dsserve {

namespace {

// One row per configuration SGLang lists for the GPU model: weight bytes and KV tokens per GPU, or
// why it does not fit.
std::string print_listed_configs(const ModelConfig& base, MemoryPlanInput in, const GpuModel& gpu) {
  std::string out = fmt::format("{}, {} layers, on {} ({} GiB per GPU), --mem-fraction-static {}\n"
                                "| weights | GPUs | layout | weights per GPU GiB | KV tokens per GPU | fits |\n"
                                "|---|---:|---|---:|---:|---|\n",
                                base.architecture, base.num_hidden_layers, gpu.label, gpu.memory_gib,
                                in.mem_fraction_static);
  for (const ListedConfig& c : sglang_configs(gpu)) {
    const ModelConfig cfg = with_weights(base, c.weights);
    in.layout = ParallelLayout{};
    in.layout.tp = c.gpus;
    const MemoryPlan p = plan_memory(cfg, in);
    out += fmt::format("| {} | {} ({} x {}) | {} | {:.2f} | {} | {} |\n", c.weights, c.gpus, (c.gpus + 7) / 8,
                       std::min(c.gpus, 8), in.layout.describe(),
                       double(p.weight_bytes_per_gpu) / double(int64_t(1) << 30), p.kv_tokens_per_gpu,
                       p.fits ? std::string("yes") : "no: " + why_not_fit(p, in, gpu.label));
  }
  return out;
}

}  // namespace

void add_plan_memory_command(CLI::App& app) {
  struct Options {
    std::string model_path, overrides, kv_cache_dtype = "auto", quantization;
    ParallelLayout layout;
    double mem_fraction_static = 0.88, gpu_memory_gib = 139.4;  // an H200 as the driver reports it
    bool no_mtp = false, sglang_configs = false;
    std::string gpu;
  };
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand("plan-memory", "Weight bytes and KV capacity per GPU for a parallel layout");
  sub->add_option("--model-path", o->model_path, "Directory with config.json (e.g. configs/deepseek-v3)")->required();
  sub->add_option("--json-model-override-args", o->overrides);
  sub->add_option("--tp-size,--tp", o->layout.tp)->capture_default_str();
  sub->add_option("--dp-size,--dp", o->layout.dp)->capture_default_str();
  sub->add_option("--ep-size", o->layout.ep)->capture_default_str();
  sub->add_flag("--enable-dp-attention", o->layout.dp_attention);
  sub->add_option("--mem-fraction-static", o->mem_fraction_static)->capture_default_str();
  CLI::Option* mem = sub->add_option("--gpu-memory-gib", o->gpu_memory_gib, "Memory of one GPU")->capture_default_str();
  sub->add_option("--gpu", o->gpu, "GPU model (its memory): a100-80g, a100-40g, h100 or h200")->excludes(mem);
  sub->add_flag("--sglang-configs", o->sglang_configs,
                "Plan the configurations SGLang lists for DeepSeek-V3/R1 on the --gpu model (weights x GPUs, "
                "tensor parallel) instead of one layout");
  sub->add_option("--kv-cache-dtype", o->kv_cache_dtype, "auto | bf16 | fp8_e4m3 | fp8_e5m2")->capture_default_str();
  sub->add_flag("--no-mtp", o->no_mtp, "Leave the MTP layer out (no speculative decoding)");
  sub->add_option("--quantization", o->quantization,
                  "Plan the weights stored as fp8, blockwise_int8, w8a8_int8 or awq (awq_marlin, moe_wna16) instead "
                  "of as config.json says");
  sub->callback([o] {
    ModelConfig cfg = ModelConfig::load(o->model_path, o->overrides);
    cfg.apply_quantization_flag(o->quantization, o->model_path, /*generated=*/true);
    const GpuModel gpu = o->gpu.empty() ? GpuModel{"", fmt::format("{} GiB GPU", o->gpu_memory_gib), o->gpu_memory_gib}
                                        : gpu_model(o->gpu);
    MemoryPlanInput in;
    in.layout = o->layout;
    in.gpu_memory_bytes = int64_t(gpu.memory_gib * double(int64_t(1) << 30));
    in.mem_fraction_static = o->mem_fraction_static;
    DS_CHECK(o->kv_cache_dtype == "auto" || o->kv_cache_dtype == "bf16" || o->kv_cache_dtype.starts_with("fp8_e"),
             "--kv-cache-dtype: expected auto, bf16, fp8_e4m3 or fp8_e5m2, found '{}'", o->kv_cache_dtype);
    in.kv_bytes_per_value = o->kv_cache_dtype.starts_with("fp8") ? 1 : 2;
    in.include_mtp = !o->no_mtp;
    if (o->sglang_configs) {
      DS_CHECK(!o->gpu.empty(), "--sglang-configs: name the GPU model with --gpu (a100-80g, a100-40g, h100, h200)");
      std::cout << print_listed_configs(cfg, in, gpu);
      return;
    }
    MemoryPlan p = plan_memory(cfg, in);
    std::cout << cfg.architecture << ", " << cfg.num_hidden_layers << " layers, "
              << (cfg.quantization ? quant_method_name(cfg.quantization->method) : "bf16") << " weights"
              << (cfg.quantized_as(QuantMethod::Awq) ? " (group " + std::to_string(cfg.quantization->group_size) + ")"
                                                     : std::string())
              << ", " << in.layout.describe() << ", "
              << gpu.memory_gib << " GiB per GPU" << (o->gpu.empty() ? "" : " (" + gpu.label + ")")
              << ", --mem-fraction-static " << o->mem_fraction_static << "\n"
              << p.table();
    if (!p.fits) {
      const int tp = smallest_fitting_tp(cfg, in);
      fail("plan-memory: {} does not fit: {}{}", in.layout.describe(), why_not_fit(p, in, gpu.label),
           tp ? fmt::format(" (--tp-size {} fits)", tp) : std::string(" (no tensor-parallel size up to 256 fits)"));
    }
  });
}

}  // namespace dsserve
