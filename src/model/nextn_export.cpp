// export-nextn (see nextn_export.h).
#include "model/nextn_export.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "model/checkpoint_writer.h"
#include "model/tensor_specs.h"

namespace fs = std::filesystem;

namespace dsserve {

void export_nextn(const std::string& input_dir, const std::string& output_dir) {
  ModelConfig cfg = ModelConfig::load(input_dir);
  DS_CHECK(cfg.num_nextn_predict_layers >= 1, "{}: config.json has num_nextn_predict_layers = {}: no MTP layer to export",
           input_dir, cfg.num_nextn_predict_layers);
  DS_CHECK(fs::absolute(input_dir) != fs::absolute(output_dir), "export-nextn: --output-dir must differ from --input-dir");
  Checkpoint ckpt = Checkpoint::open(input_dir);
  const std::string from = layer_prefix(cfg.num_hidden_layers), to = layer_prefix(0);
  std::map<std::string, Tensor> tensors;
  for (const std::string& name : ckpt.names()) {
    if (!name.starts_with(from)) continue;
    if (name.ends_with("embed_tokens.weight") || name.ends_with("shared_head.head.weight")) continue;
    tensors[to + name.substr(from.size())] = ckpt.view(name);
  }
  DS_CHECK(tensors.count(to + "eh_proj.weight"), "{}: no tensors of the MTP layer {} (expected {}eh_proj.weight)",
           input_dir, cfg.num_hidden_layers, from);
  fs::create_directories(output_dir);
  for (const auto& entry : fs::directory_iterator(input_dir)) {
    const std::string n = entry.path().filename().string();
    if (!entry.is_regular_file() || n.ends_with(".safetensors") || n == "model.safetensors.index.json" ||
        n == "config.json")
      continue;
    fs::copy_file(entry.path(), fs::path(output_dir) / n, fs::copy_options::overwrite_existing);
  }
  nlohmann::ordered_json config;
  {
    std::ifstream f(fs::path(input_dir) / "config.json");
    config = nlohmann::ordered_json::parse(f);
  }
  config["num_hidden_layers"] = 1;
  config["architectures"] = {"DeepseekV3ForCausalLMNextN"};
  write_sharded_checkpoint(output_dir, tensors, 1);
  std::ofstream(fs::path(output_dir) / "config.json") << config.dump(2) << "\n";
  spdlog::info("exported the MTP layer ({} tensors) of {} to {}", tensors.size(), input_dir, output_dir);
}

}  // namespace dsserve
