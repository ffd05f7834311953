// The memory plan of a layout, before any GPU is touched: weight bytes each GPU holds (from the
// checkpoint's tensor list and how each tensor is split), the latent-cache bytes per token, and the
// KV capacity per GPU at --mem-fraction-static of the GPU's memory (SGLang's meaning: weights plus
// KV pool take that fraction).
#pragma once
#include <cstdint>
#include <string>

#include "io/model_config.h"
#include "parallel/layout.h"

namespace dsserve {

struct MemoryPlan {
  int64_t weight_bytes_per_gpu = 0;      // the largest over the GPUs
  int64_t weight_bytes_total = 0;        // the checkpoint's bytes (MTP included when counted)
  int64_t kv_bytes_per_token = 0;        // per GPU: latent of every layer it caches for a token
  int64_t kv_tokens_per_gpu = 0;         // KV capacity of one GPU (0 when weights do not fit)
  int64_t kv_tokens_total = 0;           // distinct tokens the whole layout can hold
  int64_t budget_bytes_per_gpu = 0;      // gpu memory x mem_fraction_static
  bool fits = false;
  std::string table() const;             // human-readable summary
};

struct MemoryPlanInput {
  ParallelLayout layout;
  int64_t gpu_memory_bytes = 0;
  double mem_fraction_static = 0.88;
  int kv_bytes_per_value = 2;            // 2: bf16 latent cache, 1: fp8
  bool include_mtp = true;               // the MTP layer is loaded (speculative decoding)
};

MemoryPlan plan_memory(const ModelConfig& cfg, const MemoryPlanInput& in);

}  // namespace dsserve
