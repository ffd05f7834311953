// The step between MLA's fused q_a + kv_a projection and the rest of attention, in one kernel:
// the new tokens' latents (RMSNorm of c_kv, interleaved RoPE on k_pe) stored in the paged cache, and
// the q_a RMSNorm of the query part with its per-token-per-128 e4m3 quantization for q_b. Replaces
// four launches (two norms, RoPE, the cache store) with one; each value is rounded as the unfused
// ops round it (BF16 after the norm and after RoPE, then the cache's type).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace dsserve::cuda {

struct LatentPrologueParams {
  const void* qkv_a;       // [tokens, q_part + kv_rank + rope_dim] F32 or BF16, rows strided by qkv_stride
  DType in_dtype;
  int64_t qkv_stride;
  int64_t tokens, q_part, kv_rank, rope_dim;
  float eps;
  const float* kv_norm;    // [kv_rank]
  const int32_t* positions;  // [tokens]
  const float* rope_table;   // [table_positions, rope_dim]: interleaved (cos, sin)
  int64_t table_positions;
  const int32_t* out_slots;  // [tokens]
  void* cache;               // [slots, kv_rank + rope_dim] contiguous
  DType cache_dtype;         // F32, BF16, F8_E4M3 or F8_E5M2
  int64_t slots;
  // The query part's norm, or q_norm null: q_out [tokens, q_part] BF16 contiguous; q [q_rows, q_part]
  // e4m3 and q_scale [q_part / 128, q_rows] (token contiguous; rows past tokens zero, scale 1).
  const float* q_norm;
  void* q_out;
  uint8_t* q;
  float* q_scale;
  int64_t q_rows;
};

// Requirements: q_part % 128 == 0 (with q_norm), rope_dim even, q_part + kv_rank <= 8192.
cudaError_t launch_latent_prologue(const LatentPrologueParams& p, cudaStream_t stream);

}  // namespace dsserve::cuda
