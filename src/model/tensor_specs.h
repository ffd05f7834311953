// The checkpoint tensors a DeepSeek-V3/V2 config implies: names as in the published checkpoints,
// shapes, and how each is stored (block-FP8 linear weights keep a weight_scale_inv beside them).
// The loader checks a checkpoint against this list; init-tiny-model and --load-format dummy write
// or generate exactly this list.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"

namespace dsserve {

enum class TensorRole : uint8_t {
  Linear,     // [out, in]; block-FP8 (with a weight_scale_inv) when the config is quantized
  Dense,      // [out, in] kept in BF16 even in FP8 checkpoints (router, eh_proj, lm_head)
  Embedding,  // [vocab, hidden] BF16
  Norm,       // [n] BF16, values near 1
  Bias,       // [n] F32 (e_score_correction_bias)
  Scale,      // [ceil(out/128), ceil(in/128)] F32 weight_scale_inv of the Linear just before it
};

struct TensorSpec {
  std::string name;
  Shape shape;
  TensorRole role;
  bool mtp = false;     // belongs to a multi-token-prediction layer
  bool shared = false;  // an MTP copy of the target's embedding / lm_head, which the model reuses
};

// Every tensor of the model; with include_mtp the num_nextn_predict_layers layers too.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& cfg, bool include_mtp);
// The dtype a spec is stored with in a checkpoint written by this config (BF16 / F32 / F8_E4M3).
DType spec_storage_dtype(const ModelConfig& cfg, const TensorSpec& spec);
std::string layer_prefix(int layer);  // "model.layers.{i}."

}  // namespace dsserve
