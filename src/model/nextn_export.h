// export-nextn: the multi-token-prediction layer of a DeepSeek-V3 checkpoint as a checkpoint of
// its own (SGLang's export_deepseek_nextn semantics): non-weight files copied, config with
// num_hidden_layers 1 and architecture DeepseekV3ForCausalLMNextN, the MTP layer's tensors (but
// embed_tokens and shared_head.head, which the draft shares with the target) renamed to
// model.layers.0.*, dtypes kept (FP8 stays FP8, with its scales), with an index.
#pragma once
#include <string>

namespace dsserve {

void export_nextn(const std::string& input_dir, const std::string& output_dir);

}  // namespace dsserve
