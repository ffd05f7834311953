// --kv-cache-dtype parsing (see kv_cache_dtype.h).
#include "model/kv_cache_dtype.h"

#include "core/error.h"

namespace dsserve {

std::optional<DType> parse_kv_cache_dtype(std::string_view value) {
  if (value == "auto" || value == "bf16" || value == "bfloat16") return std::nullopt;
  if (value == "fp8_e4m3") return DType::F8_E4M3;
  if (value == "fp8_e5m2") return DType::F8_E5M2;
  fail("--kv-cache-dtype: expected auto, bf16, fp8_e4m3 or fp8_e5m2, found '{}'", value);
}

std::string kv_cache_dtype_name(DType cache_dtype) {
  switch (cache_dtype) {
    case DType::F8_E4M3: return "fp8_e4m3";
    case DType::F8_E5M2: return "fp8_e5m2";
    case DType::BF16: return "bf16";
    case DType::F32: return "float32";
    default: return std::string(dtype_name(cache_dtype));
  }
}

}  // namespace dsserve
