// Tests of config.json parsing: the fixture configs, V2-style configs, defaults, overrides, and one
// test per rejected input (the error must name the source, the field and what was found).
#include "io/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/test_paths.h"
#include "core/error.h"

namespace dsserve {
namespace {

using json = nlohmann::json;
using testing::HasSubstr;

constexpr const char* kSource = "tiny/config.json";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a dsserve::Error";
  return "";
}

// The tiny-v3 fixture config (bf16), inline so these tests run without the fixtures.
json tiny_v3() {
  return json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "bos_token_id": 0,
    "eos_token_id": 1, "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 256,
    "intermediate_size": 384, "kv_lora_rank": 128, "max_position_embeddings": 163840,
    "moe_intermediate_size": 128, "moe_layer_freq": 1, "n_group": 4, "n_routed_experts": 16,
    "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 4, "num_experts_per_tok": 4,
    "num_hidden_layers": 3, "num_key_value_heads": 4, "num_nextn_predict_layers": 1, "q_lora_rank": 192,
    "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                     "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": false,
    "topk_group": 2, "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "use_cache": true, "v_head_dim": 64,
    "vocab_size": 2048})");
}

json fp8_block() {
  return json::parse(R"({"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                         "weight_block_size": [128, 128]})");
}

ModelConfig parse(const json& j, const std::string& overrides = "") {
  return ModelConfig::parse(j.dump(), kSource, overrides);
}

// The error parsing `j` gives; it must name the source file.
std::string parse_error(const json& j, const std::string& overrides = "") {
  std::string msg = error_of([&] { parse(j, overrides); });
  EXPECT_THAT(msg, HasSubstr(kSource));
  return msg;
}

json with(json j, const std::string& key, const json& value) {
  j[key] = value;
  return j;
}

double fixture_scale() {
  double m = 0.1 * std::log(40.0) + 1.0;
  return std::pow(96.0, -0.5) * m * m;
}

void expect_tiny_fields(const ModelConfig& c) {
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.architecture, "DeepseekV3ForCausalLM");
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.q_lora_rank, std::optional<int>(192));
  EXPECT_EQ(c.kv_lora_rank, 128);
  EXPECT_EQ(c.qk_head_dim(), 96);
  EXPECT_EQ(c.latent_dim(), 160);
  EXPECT_EQ(c.v_head_dim, 64);
  EXPECT_EQ(c.n_routed_experts, 16);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_NEAR(c.softmax_scale(), fixture_scale(), 1e-15);
}

TEST(ModelConfig, ParsesTinyV3) {
  ModelConfig c = parse(tiny_v3());
  expect_tiny_fields(c);
  EXPECT_FALSE(c.quantization.has_value());
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfig, LoadsFixtureConfigs) {
  DS_REQUIRE_FIXTURES();
  ModelConfig bf16 = ModelConfig::load(test::fixtures_dir() + "/tiny-v3-bf16");
  expect_tiny_fields(bf16);
  EXPECT_FALSE(bf16.quantization.has_value());
  ModelConfig fp8 = ModelConfig::load(test::fixtures_dir() + "/tiny-v3-fp8");
  expect_tiny_fields(fp8);
  ASSERT_TRUE(fp8.quantization.has_value());
  EXPECT_EQ(fp8.quantization->fmt, "e4m3");
  EXPECT_EQ(fp8.quantization->activation_scheme, "dynamic");
  EXPECT_EQ(fp8.quantization->block_n, 128);
  EXPECT_EQ(fp8.quantization->block_k, 128);
}

TEST(ModelConfig, LoadsQuantizedFixtureConfigs) {
  DS_REQUIRE_FIXTURES();
  ModelConfig awq = ModelConfig::load(test::fixtures_dir() + "/tiny-v3-awq");
  ASSERT_TRUE(awq.quantized_as(QuantMethod::Awq));
  EXPECT_EQ(awq.quantization->group_size, 64);
  EXPECT_EQ(awq.quantization->bits, 4);
  ModelConfig block = ModelConfig::load(test::fixtures_dir() + "/tiny-v3-int8-block");
  ASSERT_TRUE(block.quantized_as(QuantMethod::BlockInt8));
  EXPECT_EQ(block.quantization->block_n, 128);
  // The channel-INT8 checkpoint states nothing: --quantization w8a8_int8 says how it is stored.
  const std::string channel = test::fixtures_dir() + "/tiny-v3-int8-channel";
  EXPECT_FALSE(ModelConfig::load(channel).quantization.has_value());
  ModelConfig c = ModelConfig::load(channel, "", "w8a8_int8");
  ASSERT_TRUE(c.quantized_as(QuantMethod::ChannelInt8));
  EXPECT_FALSE(c.quantization->in_config);
  EXPECT_FALSE(c.to_json().contains("quantization_config"));
}

json awq_config() {
  return json::parse(R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true,
                         "version": "gemm", "modules_to_not_convert": null})");
}

TEST(ModelConfig, QuantizationFlagMatchesTheCheckpointOrIsAnErrorNamingBoth) {
  for (const char* alias : {"awq", "awq_marlin", "moe_wna16"}) {
    ModelConfig c = parse(with(tiny_v3(), "quantization_config", awq_config()), "");
    EXPECT_NO_THROW(c.apply_quantization_flag(alias, kSource)) << alias;
    EXPECT_TRUE(c.quantized_as(QuantMethod::Awq));
  }
  ModelConfig fp8 = parse(with(tiny_v3(), "quantization_config", fp8_block()));
  std::string msg = error_of([&] { fp8.apply_quantization_flag("awq", kSource); });
  EXPECT_THAT(msg, HasSubstr("--quantization awq contradicts the checkpoint"));
  EXPECT_THAT(msg, HasSubstr("quantization_config.quant_method \"fp8\""));
  msg = error_of([&] {
    ModelConfig a = parse(with(tiny_v3(), "quantization_config", awq_config()));
    a.apply_quantization_flag("w8a8_int8", kSource);
  });
  EXPECT_THAT(msg, HasSubstr("--quantization w8a8_int8 contradicts the checkpoint"));
  EXPECT_THAT(msg, HasSubstr("\"awq\""));
  ModelConfig bf16 = parse(tiny_v3());
  EXPECT_THAT(error_of([&] { bf16.apply_quantization_flag("fp8", kSource); }),
              HasSubstr("--quantization fp8 contradicts the checkpoint: tiny/config.json has no quantization_config"));
  EXPECT_THAT(error_of([&] { bf16.apply_quantization_flag("awq", kSource); }), HasSubstr("has no quantization_config"));
  EXPECT_THAT(error_of([&] { bf16.apply_quantization_flag("gptq", kSource); }),
              HasSubstr("--quantization gptq: expected fp8, blockwise_int8, w8a8_int8, awq, awq_marlin or moe_wna16"));
  bf16.apply_quantization_flag("blockwise_int8", kSource);
  EXPECT_TRUE(bf16.quantized_as(QuantMethod::BlockInt8));
  // Parsing with the flag does the same.
  EXPECT_TRUE(ModelConfig::parse(tiny_v3().dump(), kSource, "", "w8a8_int8").quantized_as(QuantMethod::ChannelInt8));
  // Without a checkpoint (--load-format dummy, plan-memory) the flag chooses the stored form.
  ModelConfig gen = parse(with(tiny_v3(), "quantization_config", fp8_block()));
  gen.apply_quantization_flag("awq", kSource, /*generated=*/true);
  ASSERT_TRUE(gen.quantized_as(QuantMethod::Awq));
  EXPECT_EQ(gen.quantization->group_size, 128);
  EXPECT_NO_THROW(gen.validate("generated"));
}

TEST(ModelConfig, QuantizationConfigsOfEachMethod) {
  ModelConfig a = parse(with(tiny_v3(), "quantization_config", awq_config()));
  EXPECT_EQ(a.quantization->group_size, 128);
  EXPECT_EQ(a.quantization->version, "gemm");
  ModelConfig r = parse(a.to_json());  // round trip
  EXPECT_TRUE(r.quantized_as(QuantMethod::Awq));
  EXPECT_EQ(r.quantization->group_size, 128);
  json b = json::parse(R"({"quant_method": "blockwise_int8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]})");
  EXPECT_TRUE(parse(parse(with(tiny_v3(), "quantization_config", b)).to_json()).quantized_as(QuantMethod::BlockInt8));
  EXPECT_TRUE(parse(with(tiny_v3(), "quantization_config", json{{"quant_method", "w8a8_int8"}}))
                  .quantized_as(QuantMethod::ChannelInt8));
  struct Bad {
    const char* field;
    json value;
    const char* words;
  };
  for (const Bad& bad : {Bad{"bits", 8, "quantization_config.bits: expected 4"},
                         Bad{"version", "gemv", "quantization_config.version: expected one of \"gemm\", found \"gemv\""},
                         Bad{"zero_point", false, "quantization_config.zero_point: expected true"},
                         Bad{"group_size", 0, "quantization_config.group_size: expected a positive group"}}) {
    json q = awq_config();
    q[bad.field] = bad.value;
    EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", q)), HasSubstr(bad.words)) << bad.field;
  }
  b["weight_block_size"] = {64, 64};
  EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", b)),
              HasSubstr("quantization_config.weight_block_size: expected [128, 128], found [64, 64]"));
}

TEST(ModelConfig, SoftmaxScaleOfFixture) {
  // 96^-0.5 * (0.1 * ln 40 + 1)^2
  EXPECT_NEAR(parse(tiny_v3()).softmax_scale(), 0.1912494442, 1e-9);
  EXPECT_NEAR(parse(tiny_v3()).softmax_scale(), fixture_scale(), 1e-15);
}

TEST(ModelConfig, SoftmaxScaleWithoutYarnMscale) {
  EXPECT_DOUBLE_EQ(parse(with(tiny_v3(), "rope_scaling", nullptr)).softmax_scale(), 1.0 / std::sqrt(96.0));
  json j = tiny_v3();
  j["rope_scaling"]["mscale_all_dim"] = 0;
  EXPECT_DOUBLE_EQ(parse(j).softmax_scale(), 1.0 / std::sqrt(96.0));
  j["rope_scaling"]["mscale_all_dim"] = 1.0;
  j["rope_scaling"]["factor"] = 1.0;
  EXPECT_DOUBLE_EQ(parse(j).softmax_scale(), 1.0 / std::sqrt(96.0));
}

TEST(ModelConfig, QLoraRankNullOrAbsentMeansPlainQProj) {
  EXPECT_FALSE(parse(with(tiny_v3(), "q_lora_rank", nullptr)).q_lora_rank.has_value());
  json j = tiny_v3();
  j.erase("q_lora_rank");
  EXPECT_FALSE(parse(j).q_lora_rank.has_value());
}

TEST(ModelConfig, DeepseekV2LiteStyle) {
  json j = tiny_v3();
  j["model_type"] = "deepseek_v2";
  j["architectures"] = {"DeepseekV2ForCausalLM"};
  j["q_lora_rank"] = nullptr;
  j["scoring_func"] = "softmax";
  j["topk_method"] = "greedy";
  j["n_group"] = nullptr;
  j["topk_group"] = nullptr;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 40}, {"mscale", 0.707}, {"mscale_all_dim", 0.707},
                       {"original_max_position_embeddings", 4096}, {"beta_fast", 32}, {"beta_slow", 1}};
  j["eos_token_id"] = json::array({100001, 100002});
  ModelConfig c = parse(j);
  EXPECT_EQ(c.model_type, "deepseek_v2");
  EXPECT_EQ(c.architecture, "DeepseekV2ForCausalLM");
  EXPECT_FALSE(c.q_lora_rank.has_value());
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.eos_token_id, 100001);
  double m = 0.1 * 0.707 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c.softmax_scale(), m * m / std::sqrt(96.0), 1e-15);
}

TEST(ModelConfig, DefaultsFollowHuggingFace) {
  ModelConfig v3 = ModelConfig::parse(R"({"model_type": "deepseek_v3"})", kSource);
  EXPECT_EQ(v3.hidden_size, 7168);
  EXPECT_EQ(v3.n_routed_experts, 256);
  EXPECT_EQ(v3.first_k_dense_replace, 3);
  EXPECT_EQ(v3.scoring_func, "sigmoid");
  EXPECT_FALSE(v3.rope_scaling.has_value());
  ModelConfig v2 = ModelConfig::parse(R"({"model_type": "deepseek_v2"})", kSource);
  EXPECT_EQ(v2.hidden_size, 4096);
  EXPECT_EQ(v2.n_routed_experts, 0);  // dense
  EXPECT_EQ(v2.scoring_func, "softmax");
  EXPECT_FALSE(v2.is_moe_layer(5));
}

TEST(ModelConfig, DeepseekYarnAndRopeTypeSpelling) {
  json j = tiny_v3();
  j["rope_scaling"]["type"] = "deepseek_yarn";
  EXPECT_TRUE(parse(j).rope_scaling.has_value());
  j["rope_scaling"].erase("type");
  j["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_TRUE(parse(j).rope_scaling.has_value());
}

TEST(ModelConfig, ToJsonRoundTrips) {
  for (json j : {tiny_v3(), with(with(tiny_v3(), "quantization_config", fp8_block()), "q_lora_rank", nullptr)}) {
    ModelConfig a = parse(j);
    json out = a.to_json();
    EXPECT_TRUE(out["q_lora_rank"].is_null() == !a.q_lora_rank.has_value());
    EXPECT_EQ(out.contains("quantization_config"), a.quantization.has_value());
    ModelConfig b = ModelConfig::parse(out.dump(), "round-trip");
    EXPECT_EQ(b.to_json(), out);
    EXPECT_EQ(b.softmax_scale(), a.softmax_scale());
  }
}

TEST(ModelConfig, ToJsonWritesNullQLoraRankAndQuantization) {
  json out = parse(with(with(tiny_v3(), "q_lora_rank", nullptr), "quantization_config", fp8_block())).to_json();
  EXPECT_TRUE(out.contains("q_lora_rank"));
  EXPECT_TRUE(out["q_lora_rank"].is_null());
  EXPECT_EQ(out["quantization_config"]["quant_method"], "fp8");
  EXPECT_EQ(out["quantization_config"]["weight_block_size"], json::array({128, 128}));
  EXPECT_EQ(out["rope_scaling"]["type"], "yarn");
}

// ---- overrides ----

TEST(ModelConfig, OverridesReplaceTopLevelFields) {
  ModelConfig c = parse(tiny_v3(), R"({"num_hidden_layers": 4, "rope_scaling": null})");
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_EQ(parse(tiny_v3(), "  ").num_hidden_layers, 3);
}

TEST(ModelConfig, OverridesAreValidated) {
  std::string msg = parse_error(tiny_v3(), R"({"n_group": 3})");
  EXPECT_THAT(msg, HasSubstr("n_routed_experts (16) must be divisible by n_group (3)"));
}

TEST(ModelConfig, OverridesMustBeAJsonObject) {
  EXPECT_THAT(error_of([] { parse(tiny_v3(), "{num_hidden_layers: 4"); }),
              HasSubstr("--json-model-override-args: not valid JSON"));
  EXPECT_THAT(error_of([] { parse(tiny_v3(), "[4]"); }),
              HasSubstr("--json-model-override-args: expected a JSON object"));
}

// ---- rejected inputs ----

TEST(ModelConfig, InvalidJsonText) {
  EXPECT_THAT(error_of([] { ModelConfig::parse("{\"model_type\": ", kSource); }),
              HasSubstr("tiny/config.json: not valid JSON"));
  EXPECT_THAT(error_of([] { ModelConfig::parse("[]", kSource); }), HasSubstr("expected a JSON object"));
}

TEST(ModelConfig, UnknownModelType) {
  std::string msg = parse_error(with(tiny_v3(), "model_type", "llama"));
  EXPECT_THAT(msg, HasSubstr("model_type"));
  EXPECT_THAT(msg, HasSubstr("\"llama\""));
  json j = tiny_v3();
  j.erase("model_type");
  EXPECT_THAT(parse_error(j), HasSubstr("model_type: missing"));
}

TEST(ModelConfig, UnsupportedRopeType) {
  json j = tiny_v3();
  j["rope_scaling"]["type"] = "linear";
  std::string msg = parse_error(j);
  EXPECT_THAT(msg, HasSubstr("rope_scaling.type"));
  EXPECT_THAT(msg, HasSubstr("\"linear\""));
  j["rope_scaling"].erase("type");
  EXPECT_THAT(parse_error(j), HasSubstr("rope_scaling.type"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "rope_scaling", "yarn")), HasSubstr("rope_scaling: expected an object"));
}

TEST(ModelConfig, BadQuantizationConfig) {
  json q = fp8_block();
  q["weight_block_size"] = {64, 128};
  std::string msg = parse_error(with(tiny_v3(), "quantization_config", q));
  EXPECT_THAT(msg, HasSubstr("quantization_config.weight_block_size"));
  EXPECT_THAT(msg, HasSubstr("[64, 128]"));
  q["weight_block_size"] = {128};
  EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", q)),
              HasSubstr("quantization_config.weight_block_size: expected [128, 128], found [128]"));
  q = fp8_block();
  q["quant_method"] = "gptq";
  EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", q)),
              HasSubstr("quantization_config.quant_method: expected \"fp8\", \"blockwise_int8\", \"w8a8_int8\" or "
                        "\"awq\", found \"gptq\""));
  q = fp8_block();
  q["fmt"] = "e5m2";
  EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", q)), HasSubstr("quantization_config.fmt"));
  q = fp8_block();
  q["activation_scheme"] = "static";
  EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", q)),
              HasSubstr("quantization_config.activation_scheme"));
}

TEST(ModelConfig, WrongJsonTypesNameFieldAndExpectedType) {
  EXPECT_THAT(parse_error(with(tiny_v3(), "hidden_size", "256")),
              HasSubstr("hidden_size: expected an integer, found \"256\""));
  EXPECT_THAT(parse_error(with(tiny_v3(), "num_hidden_layers", 3.5)),
              HasSubstr("num_hidden_layers: expected an integer"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "vocab_size", nullptr)), HasSubstr("vocab_size: expected an integer"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "norm_topk_prob", 1)), HasSubstr("norm_topk_prob: expected a boolean"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "scoring_func", 3)), HasSubstr("scoring_func: expected a string"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "rms_norm_eps", "1e-6")), HasSubstr("rms_norm_eps: expected a number"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "q_lora_rank", "192")), HasSubstr("q_lora_rank: expected an integer"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "hidden_size", 1e12)), HasSubstr("hidden_size: expected an integer"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "hidden_size", 5000000000LL)), HasSubstr("hidden_size: expected a 32-bit"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "eos_token_id", "1")),
              HasSubstr("eos_token_id: expected an integer"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "eos_token_id", json::array())),
              HasSubstr("eos_token_id: expected an integer or a list of integers"));
  EXPECT_THAT(parse_error(with(tiny_v3(), "architectures", "DeepseekV3ForCausalLM")),
              HasSubstr("architectures: expected a list of strings"));
  json j = tiny_v3();
  j["rope_scaling"]["factor"] = "40";
  EXPECT_THAT(parse_error(j), HasSubstr("rope_scaling.factor: expected a number"));
  json q = fp8_block();
  q["fmt"] = 4;
  EXPECT_THAT(parse_error(with(tiny_v3(), "quantization_config", q)),
              HasSubstr("quantization_config.fmt: expected a string"));
}

TEST(ModelConfig, ValidateRejectsInconsistentValues) {
  struct Case {
    const char* field;
    json value;
    const char* words;
  };
  const Case cases[] = {
      {"hidden_size", 0, "hidden_size: expected a positive value, found 0"},
      {"num_attention_heads", -1, "num_attention_heads: expected a positive value"},
      {"qk_rope_head_dim", 33, "qk_rope_head_dim: expected an even value"},
      {"n_group", 5, "must be divisible by n_group (5)"},
      {"topk_group", 5, "topk_group (5) must be <= n_group (4)"},
      {"num_experts_per_tok", 17, "num_experts_per_tok (17) must be <= n_routed_experts (16)"},
      {"num_experts_per_tok", 9, "exceeds the 8 experts in topk_group (2) groups of 4"},
      {"scoring_func", "tanh", "scoring_func: expected one of \"sigmoid\", \"softmax\", found \"tanh\""},
      {"topk_method", "gready", "topk_method: expected one of"},
      {"hidden_act", "gelu", "hidden_act: expected one of \"silu\", found \"gelu\""},
      {"q_lora_rank", 0, "q_lora_rank: expected a positive value"},
      {"rms_norm_eps", 0, "rms_norm_eps: expected a positive value"},
      {"n_routed_experts", -2, "n_routed_experts: expected >= 0"},
      {"moe_intermediate_size", 0, "moe_intermediate_size: expected a positive value"},
  };
  for (const Case& c : cases) EXPECT_THAT(parse_error(with(tiny_v3(), c.field, c.value)), HasSubstr(c.words)) << c.field;
  json j = with(with(tiny_v3(), "n_group", 16), "topk_group", 4);  // one expert per group under noaux_tc
  EXPECT_THAT(parse_error(j), HasSubstr("noaux_tc scores a group by its 2 best experts"));
}

TEST(ModelConfig, ValidateOnAHandBuiltConfig) {
  ModelConfig c = parse(tiny_v3());
  c.quantization = Quantization{};
  EXPECT_NO_THROW(c.validate("built"));
  c.quantization->block_k = 64;
  EXPECT_THAT(error_of([&] { c.validate("built"); }),
              HasSubstr("built: quantization_config.weight_block_size: expected [128, 128], found [128, 64]"));
  c.quantization.reset();
  c.model_type = "mixtral";
  EXPECT_THAT(error_of([&] { c.validate("built"); }), HasSubstr("model_type"));
}

TEST(ModelConfig, LoadMissingConfigNamesThePath) {
  std::string dir = test::temp_dir("model-config");
  std::string msg = error_of([&] { ModelConfig::load(dir); });
  EXPECT_THAT(msg, HasSubstr(dir + "/config.json"));
  EXPECT_THAT(msg, HasSubstr("not found"));
  std::ofstream(dir + "/config.json") << tiny_v3().dump();
  EXPECT_EQ(ModelConfig::load(dir, R"({"vocab_size": 4096})").vocab_size, 4096);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsserve
