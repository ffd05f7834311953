// Checkpoint writing (see checkpoint_writer.h).
#include "model/checkpoint_writer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/tensor_specs.h"
#include "model/weight_source.h"

namespace fs = std::filesystem;

namespace dsserve {

namespace {
void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  DS_CHECK(f.good(), "cannot write {}", p.string());
  f << text;
  DS_CHECK(f.good(), "error writing {}", p.string());
}
}  // namespace

void write_sharded_checkpoint(const std::string& dir, const std::map<std::string, Tensor>& tensors, int shards) {
  fs::create_directories(dir);
  std::vector<std::string> names;
  for (auto& [n, _] : tensors) names.push_back(n);
  shards = std::max(1, std::min<int>(shards, int(names.size())));
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  size_t total = 0, per = (names.size() + shards - 1) / shards;
  for (int s = 0; s < shards; ++s) {
    std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards);
    std::vector<std::pair<std::string, Tensor>> part;
    for (size_t i = s * per; i < std::min(names.size(), (s + 1) * per); ++i) {
      part.push_back({names[i], tensors.at(names[i])});
      index["weight_map"][names[i]] = file;
      total += tensors.at(names[i]).nbytes();
    }
    write_safetensors((fs::path(dir) / file).string(), part, {{"format", "pt"}});
  }
  index["metadata"]["total_size"] = total;
  write_text(fs::path(dir) / "model.safetensors.index.json", index.dump(2));
}

void write_random_checkpoint(const std::string& dir, const ModelConfig& cfg, uint64_t seed, int shards) {
  std::vector<TensorSpec> specs = model_tensor_specs(cfg, true);
  DummyWeights dummy(cfg, seed);
  std::map<std::string, Tensor> tensors;
  for (const TensorSpec& s : specs)
    if (!s.shared) tensors[s.name] = dummy.get(s);
  for (const TensorSpec& s : specs)
    if (s.shared)
      tensors[s.name] = tensors.at(s.name.ends_with("embed_tokens.weight") ? "model.embed_tokens.weight"
                                                                           : "lm_head.weight");
  write_sharded_checkpoint(dir, tensors, shards);
  write_text(fs::path(dir) / "config.json", cfg.to_json().dump(2));
}

}  // namespace dsserve
