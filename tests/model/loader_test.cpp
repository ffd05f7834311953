// Weight loading against the tensor list a config implies: a written random checkpoint loads and
// matches --load-format dummy (BF16, FP8, AWQ, channel and block INT8); missing tensors and wrong
// shapes or dtypes are fatal and named with expected versus found (the quantized formats' qweight,
// qzeros, scales, weight_scale and weight_scale_inv included); tensors the model does not use are
// tolerated; an AWQ projection left in BF16 loads as BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "backend/weight_dequant.h"
#include "common/test_paths.h"
#include "common/tiny_model_config.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/checkpoint_writer.h"
#include "model/model_test_util.h"
#include "model/tensor_specs.h"

namespace dsserve::test {
namespace {

nlohmann::json quant_config(const std::string& method) {
  if (method == "fp8")
    return {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"}, {"weight_block_size", {128, 128}}};
  if (method == "awq")  // 32 divides every input width of the tiny config (64, 96, 128, 192)
    return {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 32}, {"zero_point", true}, {"version", "gemm"}};
  if (method == "blockwise_int8")
    return {{"quant_method", "blockwise_int8"}, {"activation_scheme", "dynamic"}, {"weight_block_size", {128, 128}}};
  return {{"quant_method", method}};
}

ModelConfig tiny_as(const std::string& method) {
  nlohmann::json c = tiny_model_config();
  if (!method.empty()) c["quantization_config"] = quant_config(method);
  return ModelConfig::parse(c.dump(), "tiny");
}

ModelConfig tiny(bool fp8) { return tiny_as(fp8 ? "fp8" : ""); }

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

TEST(Loader, QuantizedCheckpointsLoadAndEqualDummyWeights) {
  for (std::string method : {"awq", "w8a8_int8", "blockwise_int8"}) {
    ModelConfig cfg = tiny_as(method);
    std::string dir = temp_dir("ckpt");
    write_random_checkpoint(dir, cfg, 23);
    Checkpoint c = Checkpoint::open(dir);
    const std::string q = "model.layers.1.self_attn.q_b_proj.";
    if (method == "awq") {
      EXPECT_EQ(c.info(q + "qweight").shape, Shape({96, 192 / 8}));
      EXPECT_EQ(c.info(q + "qzeros").shape, Shape({96 / 32, 192 / 8}));
      EXPECT_EQ(c.info(q + "scales").dtype, DType::F16);
    } else {
      EXPECT_EQ(c.info(q + "weight").dtype, DType::I8);
      EXPECT_EQ(c.info(q + (method == "w8a8_int8" ? "weight_scale" : "weight_scale_inv")).shape,
                method == "w8a8_int8" ? Shape({192, 1}) : Shape({2, 1}));
    }
    TestModel from_files = load_checkpoint_model(dir);
    TestModel dummy = dummy_model(cfg, 23);
    std::vector<int32_t> ids{3, 14, 15, 92, 65, 35};
    RunResult a = run_sequence(from_files, ids), b = run_sequence(dummy, ids);
    EXPECT_EQ(max_abs_diff(a.logits, b.logits), 0.0) << method;
    for (const auto& row : a.logits)
      for (float v : row) ASSERT_TRUE(std::isfinite(v)) << method << ": dummy weights give finite logits";
    std::filesystem::remove_all(dir);
  }
}

TEST(Loader, MalformedQuantizedTensorsAreFatalAndNamed) {
  const std::string a = "model.layers.1.self_attn.", e = "model.layers.2.mlp.experts.5.";
  struct Case {
    std::string method;
    std::function<void(std::map<std::string, Tensor>&)> edit;
    std::vector<std::string> words;  // each must appear in the error
  };
  const std::vector<Case> cases = {
      {"awq", [&](auto& t) { t.erase(a + "o_proj.qzeros"); },
       {"missing tensor " + a + "o_proj.qzeros (expected shape [4, 16])"}},
      {"awq", [&](auto& t) { t.erase(e + "down_proj.scales"); }, {"missing tensor " + e + "down_proj.scales"}},
      {"awq", [&](auto& t) { t[a + "q_b_proj.scales"] = Tensor::zeros_host(DType::F32, {3, 192}); },
       {"tensor " + a + "q_b_proj.scales", "expected dtype F16, found F32"}},
      {"awq", [&](auto& t) { t[a + "kv_b_proj.qweight"] = Tensor::zeros_host(DType::I32, {64, 16}); },
       {"tensor " + a + "kv_b_proj.qweight", "expected shape [64, 32], found [64, 16]"}},
      {"awq",
       [&](auto& t) {  // neither qweight nor a BF16 weight
         for (const char* x : {"qweight", "qzeros", "scales"}) t.erase(a + "q_a_proj." + x);
       },
       {"missing tensor " + a + "q_a_proj.qweight (expected I32 [128, 12]; or a BF16 " + a + "q_a_proj.weight)"}},
      {"awq",
       [&](auto& t) {  // an FP8 weight in place of the AWQ tensors
         for (const char* x : {"qweight", "qzeros", "scales"}) t.erase(a + "o_proj." + x);
         t[a + "o_proj.weight"] = Tensor::zeros_host(DType::F8_E4M3, {128, 128});
       },
       {a + "o_proj.weight", "must be a BF16 [out, 128] weight, found F8_E4M3 [128, 128]"}},
      {"w8a8_int8", [&](auto& t) { t.erase(a + "o_proj.weight_scale"); },
       {"missing tensor " + a + "o_proj.weight_scale (expected shape [128, 1])"}},
      {"w8a8_int8", [&](auto& t) { t[a + "o_proj.weight_scale"] = Tensor::zeros_host(DType::F32, {128}); },
       {"tensor " + a + "o_proj.weight_scale", "expected shape [128, 1], found [128]"}},
      {"w8a8_int8", [&](auto& t) { t[e + "up_proj.weight"] = Tensor::zeros_host(DType::F8_E4M3, {64, 128}); },
       {"tensor " + e + "up_proj.weight", "expected dtype I8 (quantization w8a8_int8) or BF16, found F8_E4M3"}},
      {"blockwise_int8", [&](auto& t) { t[a + "q_b_proj.weight_scale_inv"] = Tensor::zeros_host(DType::F16, {2, 1}); },
       {"tensor " + a + "q_b_proj.weight_scale_inv", "expected dtype F32, found F16"}},
      {"blockwise_int8", [&](auto& t) { t.erase(e + "gate_proj.weight_scale_inv"); },
       {"missing tensor " + e + "gate_proj.weight_scale_inv (expected shape [1, 1])"}},
  };
  std::map<std::string, std::map<std::string, Tensor>> sources;
  std::map<std::string, std::string> source_dirs;
  for (const Case& c : cases) {
    if (!sources.count(c.method)) {
      source_dirs[c.method] = temp_dir("src");
      write_random_checkpoint(source_dirs[c.method], tiny_as(c.method), 5);
      sources[c.method] = all_tensors(source_dirs[c.method]);
    }
    auto t = sources[c.method];
    c.edit(t);
    std::string dir = temp_dir("broken");
    write_sharded_checkpoint(dir, t, 2);
    std::filesystem::copy_file(source_dirs[c.method] + "/config.json", dir + "/config.json");
    const std::string err = load_error(dir);
    for (const std::string& w : c.words) EXPECT_NE(err.find(w), std::string::npos) << c.method << ": " << w << "\n" << err;
    std::filesystem::remove_all(dir);
  }
  for (auto& [m, d] : source_dirs) std::filesystem::remove_all(d);
}

TEST(Loader, AwqGroupSizeThatDoesNotDivideIsNamed) {
  ModelConfig cfg = tiny_as("awq");
  std::string dir = temp_dir("awq");
  write_random_checkpoint(dir, cfg, 4);
  nlohmann::json c = tiny_model_config();
  c["quantization_config"] = quant_config("awq");
  c["quantization_config"]["group_size"] = 128;  // q_b_proj has 96 input channels
  std::ofstream(dir + "/config.json") << c.dump();
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("q_b_proj.qweight"), std::string::npos) << e;
  EXPECT_NE(e.find("quantization_config.group_size 128 does not divide the input width 96"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

TEST(Loader, AwqProjectionLeftInBf16LoadsAsBf16) {
  // The quantizer may leave a projection alone (the fixture's MTP layer): its BF16 weight is used.
  ModelConfig cfg = tiny_as("awq");
  std::string dir = temp_dir("awq");
  write_random_checkpoint(dir, cfg, 8);
  auto t = all_tensors(dir);
  const std::string p = "model.layers.1.self_attn.o_proj.";
  WeightPart part{t.at(p + "qweight"), t.at(p + "scales"), t.at(p + "qzeros"), WeightFormat::Awq, 32, p + "qweight"};
  Tensor w = dequantize_to_f32(part);
  Tensor b = Tensor::zeros_host(DType::BF16, w.shape());
  convert_from_f32(DType::BF16, w.ptr<float>(), b.data(), size_t(w.numel()));
  for (const char* x : {"qweight", "qzeros", "scales"}) t.erase(p + x);
  t[p + "weight"] = b;  // the same values, stored plainly
  std::string alt = temp_dir("awq_bf16");
  write_sharded_checkpoint(alt, t, 2);
  std::filesystem::copy_file(dir + "/config.json", alt + "/config.json");
  TestModel quantized = load_checkpoint_model(dir), plain = load_checkpoint_model(alt);
  std::vector<int32_t> ids{7, 1, 400, 22};
  EXPECT_EQ(max_abs_diff(run_sequence(quantized, ids).logits, run_sequence(plain, ids).logits), 0.0);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(alt);
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
