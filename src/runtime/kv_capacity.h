// The KV pool's capacity under SGLang's --mem-fraction-static: weights plus the KV pool take that
// fraction of the GPU's total memory. Measured after the weights are loaded, as SGLang does: the
// pool gets free - total x (1 - fraction), so whatever else is already resident (weights, library
// workspaces, the CUDA context) comes out of the fraction too, and activations live in the rest.
#pragma once
#include <cstdint>

namespace dsserve {

// SGLang's default on one 141 GB H200 at --tp-size 1.
inline constexpr double kDefaultMemFractionStatic = 0.88;

struct KvCapacityInput {
  int64_t free_bytes = 0, total_bytes = 0;  // device memory after the weights are loaded
  double mem_fraction_static = kDefaultMemFractionStatic;
  int64_t bytes_per_token = 0;               // latent cache of every cached layer for one token
  int64_t reserved_pages = 1;                // pages allocated beyond the pool (the trash page)
  int page_size = 1;
};

struct KvCapacity {
  int64_t budget_bytes = 0;  // what the pool may take (negative: the weights alone exceed the fraction)
  int64_t tokens = 0;        // pool capacity in tokens, whole pages (0 when nothing fits)
};

KvCapacity kv_capacity_from_fraction(const KvCapacityInput& in);

// Bytes of the latent cache per token: cached_layers x latent_dim values of value_bytes each (2 for
// BF16, 1 for an FP8 cache, 4 for the CPU oracle's float32).
inline int64_t latent_bytes_per_token(int64_t cached_layers, int64_t latent_dim, int64_t value_bytes) {
  return cached_layers * latent_dim * value_bytes;
}

}  // namespace dsserve
