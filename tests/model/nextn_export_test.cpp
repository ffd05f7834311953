// export-nextn: the exported checkpoint has the layout SGLang's export_deepseek_nextn writes, keeps
// FP8 weights as FP8, and as a draft model computes exactly what the in-checkpoint MTP layer does.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/checkpoint_writer.h"
#include "model/model_test_util.h"
#include "model/nextn_export.h"
#include "model/tensor_specs.h"

namespace dsserve::test {
namespace {

TEST(NextnExport, LayoutAndDraftingMatchTheInCheckpointLayer) {
  nlohmann::json c = tiny_model_config();
  c["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                              {"weight_block_size", {128, 128}}};
  ModelConfig cfg = ModelConfig::parse(c.dump(), "tiny fp8");
  std::string src = temp_dir("nextn-src"), out = temp_dir("nextn-out");
  write_random_checkpoint(src, cfg, 8);
  std::ofstream(src + "/tokenizer_config.json") << "{}";
  export_nextn(src, out);

  nlohmann::json exported = nlohmann::json::parse(std::ifstream(out + "/config.json"));
  EXPECT_EQ(exported["num_hidden_layers"], 1);
  EXPECT_EQ(exported["architectures"][0], "DeepseekV3ForCausalLMNextN");
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer_config.json")) << "non-weight files are copied";
  Checkpoint ck = Checkpoint::open(out);
  EXPECT_FALSE(ck.has("model.layers.0.embed_tokens.weight"));
  EXPECT_FALSE(ck.has("model.layers.0.shared_head.head.weight"));
  EXPECT_EQ(ck.info("model.layers.0.self_attn.o_proj.weight").dtype, DType::F8_E4M3);
  EXPECT_TRUE(ck.has("model.layers.0.self_attn.o_proj.weight_scale_inv"));
  EXPECT_TRUE(ck.has("model.layers.0.eh_proj.weight"));
  for (const auto& n : ck.names()) EXPECT_TRUE(n.starts_with("model.layers.0.")) << n;

  TestModel own = load_checkpoint_model(src);
  TestModel drafted;
  drafted.backend = create_backend(DeviceKind::Cpu);
  drafted.source = std::make_unique<CheckpointWeights>(src, cfg);
  CheckpointWeights draft(out, cfg);
  RenamedWeights renamed(draft, layer_prefix(cfg.num_hidden_layers), layer_prefix(0));
  LoadOptions lo;
  lo.mtp_weights = &renamed;
  drafted.model = std::make_unique<ReplicaRunner>(cfg, *drafted.backend, *drafted.source, 4096, lo);
  drafted.pool = std::make_unique<PagePool>(64, 16);
  drafted.cache = drafted.model->make_cache(65, 16, false, std::nullopt);
  drafted.mtp_pool = std::make_unique<PagePool>(64, 16);
  drafted.mtp_cache = drafted.model->make_cache(65, 16, true, std::nullopt);

  std::vector<int32_t> ids{5, 17, 99, 3, 250, 8, 42};
  RunResult a = run_sequence(own, ids), b = run_sequence(drafted, ids);
  EXPECT_EQ(max_abs_diff(run_mtp(own, ids, a.hidden), run_mtp(drafted, ids, b.hidden)), 0.0);
  std::filesystem::remove_all(src);
  std::filesystem::remove_all(out);
}

TEST(NextnExport, CheckpointWithoutMtpLayerIsRefused) {
  nlohmann::json c = tiny_model_config();
  c["num_nextn_predict_layers"] = 0;
  std::string src = temp_dir("nextn-none");
  write_random_checkpoint(src, ModelConfig::parse(c.dump(), "no mtp"), 1);
  EXPECT_THROW(export_nextn(src, src + "-out"), Error);
  std::filesystem::remove_all(src);
}

}  // namespace
}  // namespace dsserve::test
