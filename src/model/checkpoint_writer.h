// Writes checkpoints in the published DeepSeek-V3 layout: config.json, safetensors shards and
// model.safetensors.index.json. Used by init-tiny-model (random weights) and export-nextn.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"
#include "io/model_config.h"

namespace dsserve {

// Writes `tensors` (host) into `shards` files named model-0000i-of-0000n.safetensors, with the index.
void write_sharded_checkpoint(const std::string& dir, const std::map<std::string, Tensor>& tensors, int shards);
// A random-weight checkpoint of `cfg` (MTP layers included, their embedding and head copies of
// the target's, as in the published checkpoint), plus config.json.
void write_random_checkpoint(const std::string& dir, const ModelConfig& cfg, uint64_t seed, int shards = 2);

}  // namespace dsserve
