// --kv-cache-dtype (SGLang's values) -> the element type of the latent cache. auto / bf16 / bfloat16
// keep the backend's activation type (BF16 on a GPU, float32 on the CPU oracle); fp8_e4m3 / fp8_e5m2
// store the latent (c_kv after its norm, k_pe after RoPE) as FP8 with scale 1.0, as SGLang does when
// no calibrated scale is given: values beyond +-448 (e4m3) / +-57344 (e5m2) saturate.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "core/dtype.h"

namespace dsserve {

// nullopt for auto / bf16 / bfloat16 (the backend's activation type); throws naming the flag otherwise.
std::optional<DType> parse_kv_cache_dtype(std::string_view value);
// The name reported for a cache of this element type ("bf16", "fp8_e4m3", "fp8_e5m2", "float32").
std::string kv_cache_dtype_name(DType cache_dtype);

}  // namespace dsserve
