// The checkpoint tensors a DeepSeek-V3/V2 config implies: names as in the published checkpoints,
// shapes, and how each is stored: BF16, or the projections quantized as the config says (block FP8
// or block INT8 with a weight_scale_inv, channel INT8 with a weight_scale, AWQ as qweight / qzeros /
// scales instead of the weight).
// The loader checks a checkpoint against this list; init-tiny-model and --load-format dummy write
// or generate exactly this list.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"

namespace dsserve {

enum class TensorRole : uint8_t {
  Linear,     // [out, in]; F8_E4M3 / I8 (with a scale) when the config quantizes it so, else BF16
  Dense,      // [out, in] kept in BF16 even in quantized checkpoints (router, eh_proj, lm_head)
  Embedding,  // [vocab, hidden] BF16
  Norm,       // [n] BF16, values near 1
  Bias,       // [n] F32 (e_score_correction_bias)
  Scale,      // [ceil(out/128), ceil(in/128)] F32 weight_scale_inv of the Linear just before it (fp8, blockwise_int8)
  ChannelScale,  // [out, 1] F32 weight_scale of the Linear just before it (w8a8_int8)
  // AWQ: a projection is stored as these three instead of its weight (a BF16 weight [out, in] is
  // accepted in their place: layers the quantizer left alone, as the MTP layer often is).
  AwqWeight,  // qweight [in, out/8] I32: 8 four-bit values per int32, nibble i holding column 8c + [0,2,4,6,1,3,5,7][i]
  AwqZeros,   // qzeros [in/G, out/8] I32, packed the same way
  AwqScales,  // scales [in/G, out] F16
};

struct TensorSpec {
  std::string name;
  Shape shape;
  TensorRole role;
  bool mtp = false;     // belongs to a multi-token-prediction layer
  bool shared = false;  // an MTP copy of the target's embedding / lm_head, which the model reuses
  int64_t fan_in = 0;   // the input width of the projection a Linear, scale or AWQ tensor belongs to
};

// Every tensor of the model; with include_mtp the num_nextn_predict_layers layers too.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& cfg, bool include_mtp);
// The dtype a spec is stored with in a checkpoint written by this config (BF16 / F32 / F16 / F8_E4M3 / I8 / I32).
DType spec_storage_dtype(const ModelConfig& cfg, const TensorSpec& spec);
// The name of a projection's weight ("...q_a_proj.weight") -> its prefix ("...q_a_proj."), which
// names its other tensors (weight_scale_inv, weight_scale, qweight, qzeros, scales).
std::string linear_prefix(const std::string& weight_name);
std::string layer_prefix(int layer);  // "model.layers.{i}."

}  // namespace dsserve
