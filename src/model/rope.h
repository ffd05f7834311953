// Rotary embedding tables for MLA's rope dimensions: the interleaved form (pairs 2i, 2i+1), with
// YaRN-scaled frequencies and attention factor when the config has rope_scaling of type yarn.
#pragma once
#include "core/tensor.h"
#include "io/model_config.h"

namespace dsserve {

// Host F32 table [positions, qk_rope_head_dim]: (cos, sin) of pos * inv_freq[i] at columns
// (2i, 2i+1), each times the YaRN attention factor. Angles are computed in float64.
Tensor build_rope_table(const ModelConfig& cfg, int64_t positions);

}  // namespace dsserve
