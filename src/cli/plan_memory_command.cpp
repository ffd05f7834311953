// `dsserve plan-memory`: the memory plan of a model under a parallel layout, without a GPU:
// weight bytes per GPU and KV capacity at --mem-fraction-static, e.g. for the full DeepSeek-V3
// (configs/deepseek-v3) under TP8 or DP8 attention + EP8 on 8 H200s, or its AWQ form on 8 H100s
// (--quantization awq --gpu-memory-gib 79.2).
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "io/model_config.h"
#include "parallel/memory_plan.h"

namespace dsserve {

void add_plan_memory_command(CLI::App& app) {
  struct Options {
    std::string model_path, overrides, kv_cache_dtype = "auto", quantization;
    ParallelLayout layout;
    double mem_fraction_static = 0.88, gpu_memory_gib = 139.4;  // an H200 as the driver reports it
    bool no_mtp = false;
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
  sub->add_option("--gpu-memory-gib", o->gpu_memory_gib, "Memory of one GPU")->capture_default_str();
  sub->add_option("--kv-cache-dtype", o->kv_cache_dtype, "auto | bf16 | fp8_e4m3 | fp8_e5m2")->capture_default_str();
  sub->add_flag("--no-mtp", o->no_mtp, "Leave the MTP layer out (no speculative decoding)");
  sub->add_option("--quantization", o->quantization,
                  "Plan the weights stored as fp8, blockwise_int8, w8a8_int8 or awq (awq_marlin, moe_wna16) instead "
                  "of as config.json says");
  sub->callback([o] {
    ModelConfig cfg = ModelConfig::load(o->model_path, o->overrides);
    cfg.apply_quantization_flag(o->quantization, o->model_path, /*generated=*/true);
    MemoryPlanInput in;
    in.layout = o->layout;
    in.gpu_memory_bytes = int64_t(o->gpu_memory_gib * double(int64_t(1) << 30));
    in.mem_fraction_static = o->mem_fraction_static;
    DS_CHECK(o->kv_cache_dtype == "auto" || o->kv_cache_dtype == "bf16" || o->kv_cache_dtype.starts_with("fp8_e"),
             "--kv-cache-dtype: expected auto, bf16, fp8_e4m3 or fp8_e5m2, found '{}'", o->kv_cache_dtype);
    in.kv_bytes_per_value = o->kv_cache_dtype.starts_with("fp8") ? 1 : 2;
    in.include_mtp = !o->no_mtp;
    MemoryPlan p = plan_memory(cfg, in);
    std::cout << cfg.architecture << ", " << cfg.num_hidden_layers << " layers, "
              << (cfg.quantization ? quant_method_name(cfg.quantization->method) : "bf16") << " weights"
              << (cfg.quantized_as(QuantMethod::Awq) ? " (group " + std::to_string(cfg.quantization->group_size) + ")"
                                                     : std::string())
              << ", " << in.layout.describe() << ", "
              << o->gpu_memory_gib << " GiB per GPU, --mem-fraction-static " << o->mem_fraction_static << "\n"
              << p.table();
  });
}

}  // namespace dsserve
