// Weight loading against the tensor list a config implies: a written random checkpoint loads and
// matches --load-format dummy; missing tensors and wrong shapes or dtypes are fatal and named;
// tensors the model does not use are tolerated.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/checkpoint_writer.h"
#include "model/model_test_util.h"
#include "model/tensor_specs.h"

namespace dsserve::test {
namespace {

ModelConfig tiny(bool fp8) {
  nlohmann::json c = tiny_model_config();
  if (fp8)
    c["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                {"weight_block_size", {128, 128}}};
  return ModelConfig::parse(c.dump(), "tiny");
}

std::map<std::string, Tensor> all_tensors(const std::string& dir) {
  Checkpoint c = Checkpoint::open(dir);
  std::map<std::string, Tensor> m;
  for (auto& n : c.names()) m[n] = c.view(n);
  return m;
}

std::string load_error(const std::string& dir) {
  try {
    load_checkpoint_model(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Loader, WrittenCheckpointLoadsAndEqualsDummyWeights) {
  for (bool fp8 : {false, true}) {
    ModelConfig cfg = tiny(fp8);
    std::string dir = temp_dir("ckpt");
    write_random_checkpoint(dir, cfg, 17);
    EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
    TestModel from_files = load_checkpoint_model(dir);
    TestModel dummy = dummy_model(cfg, 17);
    std::vector<int32_t> ids{3, 14, 15, 92, 65, 35};
    EXPECT_EQ(max_abs_diff(run_sequence(from_files, ids).logits, run_sequence(dummy, ids).logits), 0.0)
        << (fp8 ? "fp8" : "bf16");
    EXPECT_TRUE(from_files.model->has_mtp());
    std::filesystem::remove_all(dir);
  }
}

TEST(Loader, MissingWrongShapeAndWrongDtypeAreFatalAndNamed) {
  ModelConfig cfg = tiny(true);
  std::string src = temp_dir("src");
  write_random_checkpoint(src, cfg, 1);
  auto tensors = all_tensors(src);

  auto broken = [&](auto edit) {
    auto t = tensors;
    edit(t);
    std::string dir = temp_dir("broken");
    write_sharded_checkpoint(dir, t, 2);
    std::filesystem::copy_file(src + "/config.json", dir + "/config.json");
    std::string err = load_error(dir);
    std::filesystem::remove_all(dir);
    return err;
  };
  std::string e = broken([](auto& t) { t.erase("model.layers.1.mlp.experts.3.up_proj.weight"); });
  EXPECT_NE(e.find("missing tensor model.layers.1.mlp.experts.3.up_proj.weight"), std::string::npos) << e;
  e = broken([](auto& t) { t.erase("model.layers.0.self_attn.o_proj.weight_scale_inv"); });
  EXPECT_NE(e.find("missing tensor model.layers.0.self_attn.o_proj.weight_scale_inv"), std::string::npos) << e;
  e = broken([](auto& t) { t["model.norm.weight"] = Tensor::zeros_host(DType::BF16, {64}); });
  EXPECT_NE(e.find("model.norm.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("expected shape [128], found [64]"), std::string::npos) << e;
  e = broken([](auto& t) { t["model.norm.weight"] = Tensor::zeros_host(DType::I32, {128}); });
  EXPECT_NE(e.find("expected dtype BF16, found I32"), std::string::npos) << e;
  // Unused tensors are listed as a warning, not fatal.
  e = broken([](auto& t) { t["model.layers.0.self_attn.rotary_emb.inv_freq"] = Tensor::zeros_host(DType::F32, {8}); });
  EXPECT_EQ(e, "");
  std::filesystem::remove_all(src);
}

TEST(Loader, Fp8WeightWithoutQuantizationConfigIsNamed) {
  ModelConfig fp8 = tiny(true);
  std::string dir = temp_dir("noquant");
  write_random_checkpoint(dir, fp8, 2);
  // Same tensors, config without quantization_config.
  nlohmann::json c = tiny_model_config();
  std::ofstream(dir + "/config.json") << c.dump();
  std::string e = load_error(dir);
  EXPECT_NE(e.find("but config.json has no quantization_config"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsserve::test
