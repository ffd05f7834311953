// GPU models by name (plan-memory --gpu: memory per GPU as the driver reports it) and the
// configurations SGLang's DeepSeek-V3/R1 page lists for them (weights format x GPU count), planned
// on a model's config; why a plan does not fit, and the smallest tensor-parallel size that would.
#pragma once
#include <string>
#include <vector>

#include "io/model_config.h"
#include "parallel/memory_plan.h"

namespace dsserve {

struct GpuModel {
  std::string name;         // the --gpu value: a100-80g, a100-40g, h100, h200
  std::string label;        // "A100 80GB"
  double memory_gib = 0;    // total memory as cudaMemGetInfo reports it
};
const std::vector<GpuModel>& gpu_models();
// The model named `name`; fails listing the names.
const GpuModel& gpu_model(const std::string& name);

// Weight formats a plan can assume: "fp8" (block FP8, DeepSeek's release), "bf16" (the BF16
// conversion), "awq" (4-bit, group 128) and "int8" (channel INT8), the community conversions SGLang
// lists. The config comes back with its quantization set accordingly; fails naming the formats.
ModelConfig with_weights(ModelConfig cfg, const std::string& weights);

// A configuration SGLang lists for a GPU model: `weights` on `gpus` GPUs (nodes of 8), tensor parallel.
struct ListedConfig {
  std::string weights;
  int gpus = 8;
};
std::vector<ListedConfig> sglang_configs(const GpuModel& gpu);

// Why plan p (of input in, on gpu) does not fit, for an error message; empty when it fits.
std::string why_not_fit(const MemoryPlan& p, const MemoryPlanInput& in, const std::string& gpu_label);
// The smallest power-of-two tensor-parallel size (2 .. 256, no DP attention or EP) whose plan fits; 0 if none.
int smallest_fitting_tp(const ModelConfig& cfg, MemoryPlanInput in);

}  // namespace dsserve
