// `dsserve quantize`: a BF16 or block-FP8 DeepSeek-V3 checkpoint rewritten in the layout of the
// published quantized checkpoints (tensor_specs.h): AWQ (4-bit, AutoAWQ "gemm" packing with zero
// points, round-to-nearest per group of 64 or 128 input channels, no calibration; the decoder
// layers' projections, the MTP layer left in BF16 as AutoAWQ leaves it), channel INT8 (w8a8_int8)
// or block INT8 (blockwise_int8, 128 x 128 blocks), every projection of every layer (not eh_proj).
// Embeddings, lm_head, norms and the router stay as they are. The output keeps the input's shard
// files and index, copies its other files (tokenizer, ...), and states the method in config.json.
#pragma once
#include <string>

#include "backend/backend.h"
#include "io/model_config.h"

namespace dsserve {

struct QuantizeOptions {
  std::string input_dir, output_dir;
  QuantMethod method = QuantMethod::Awq;  // not Fp8
  int group_size = 128;                   // AWQ: 64 or 128
};
void quantize_checkpoint(const QuantizeOptions& o);

// The quantizers, from a host F32 weight [out, in] (named for errors) to the checkpoint's tensors,
// as the reference fixtures' generator quantizes:
// - AWQ: per group g of input channels and output column j, s = f16((max - min) / 15) (the range at
//   least 1e-5), z = clamp(round(-min / s), 0, 15), q = clamp(round(w / s) + z, 0, 15).
// - channel INT8: scale = max(row absmax / 127, 1e-12), q = clamp(round(w / scale), -127, 127).
// - block INT8: the same per 128 x 128 block.
// round() is to nearest, ties to even. The parts dequantize (backend/weight_dequant.h) to within
// half a step of w.
WeightPart quantize_awq(const Tensor& w_f32, int64_t group_size, const std::string& name);
WeightPart quantize_int8(const Tensor& w_f32, bool channel, const std::string& name);

}  // namespace dsserve
