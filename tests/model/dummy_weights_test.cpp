// DummyWeights::random_fill (what a GPU generates in place for --load-format dummy) describes the
// same distribution, tensor by tensor, as the values DummyWeights::get draws on the host.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/weight_dequant.h"
#include "model/tensor_specs.h"
#include "model/weight_source.h"

namespace dsserve {
namespace {

ModelConfig v3_small(bool fp8, const std::string& quantization_config = "") {
  std::string json = std::string(R"({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "hidden_size": 512, "intermediate_size": 1024, "moe_intermediate_size": 256, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 256, "kv_lora_rank": 128,
    "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64, "n_routed_experts": 8,
    "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1, "first_k_dense_replace": 1,
    "norm_topk_prob": true, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
    "vocab_size": 1024, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6)") +
                     (fp8 ? R"(, "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
    "activation_scheme": "dynamic", "weight_block_size": [128, 128]}})"
                          : quantization_config.empty() ? "}" : ", \"quantization_config\": " + quantization_config + "}");
  return ModelConfig::parse(json, "test config");
}

TEST(DummyWeights, RandomFillDescribesTheHostValues) {
  for (bool fp8 : {false, true}) {
    const ModelConfig cfg = v3_small(fp8);
    DummyWeights w(cfg, 3);
    int checked = 0;
    for (const TensorSpec& s : model_tensor_specs(cfg, true)) {
      if (s.shape.numel() < 4096) continue;  // too few values for tight moments
      std::optional<RandomFill> f = w.random_fill(s);
      ASSERT_TRUE(f.has_value()) << s.name;
      Tensor v = host_to_f32(w.get(s));
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < v.numel(); ++i) sum += v.ptr<float>()[i], sq += double(v.ptr<float>()[i]) * v.ptr<float>()[i];
      const double n = double(v.numel()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
      const double want_mean = f->offset + (f->normal ? 0.0 : f->scale / 2);
      const double want_sd = f->normal ? f->scale : f->scale / std::sqrt(12.0);
      EXPECT_NEAR(mean, want_mean, 5 * want_sd / std::sqrt(n) + 1e-6) << s.name;
      EXPECT_NEAR(sd, want_sd, 0.05 * want_sd) << s.name;
      ++checked;
    }
    EXPECT_GT(checked, 20);
  }
}

// The quantized formats: int8 values and their scales, AWQ scales (the packed 4-bit tensors are
// random bits, generated as such on both sides).
TEST(DummyWeights, QuantizedFormatsDescribeTheHostValues) {
  for (std::string q : {R"({"quant_method": "w8a8_int8"})",
                        R"({"quant_method": "blockwise_int8", "weight_block_size": [128, 128]})",
                        R"({"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "gemm"})"}) {
    const ModelConfig cfg = v3_small(false, q);
    DummyWeights w(cfg, 5);
    int checked = 0;
    for (const TensorSpec& s : model_tensor_specs(cfg, true)) {
      std::optional<RandomFill> f = w.random_fill(s);
      ASSERT_TRUE(f.has_value()) << s.name;
      if (s.shape.numel() < 4096 || spec_storage_dtype(cfg, s) == DType::I32) continue;
      Tensor raw = w.get(s);
      std::vector<double> v(static_cast<size_t>(raw.numel()));
      if (raw.dtype() == DType::I8)
        for (size_t i = 0; i < v.size(); ++i) v[i] = raw.ptr<int8_t>()[i];
      else {
        Tensor h = host_to_f32(raw);
        for (size_t i = 0; i < v.size(); ++i) v[i] = h.ptr<float>()[i];
      }
      double sum = 0, sq = 0;
      for (double x : v) sum += x, sq += x * x;
      const double n = double(v.size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
      const double want_mean = f->offset + (f->normal ? 0.0 : f->scale / 2);
      const double want_sd = f->normal ? f->scale : f->scale / std::sqrt(12.0);
      EXPECT_NEAR(mean, want_mean, 5 * want_sd / std::sqrt(n) + 1e-3 * std::fabs(want_mean) + 1e-6) << q << " " << s.name;
      EXPECT_NEAR(sd, want_sd, 0.05 * want_sd) << q << " " << s.name;
      ++checked;
    }
    EXPECT_GT(checked, 4) << q;
  }
}

TEST(DummyWeights, SeedsDifferPerTensor) {
  const ModelConfig cfg = v3_small(true);
  DummyWeights w(cfg, 3);
  std::vector<TensorSpec> specs = model_tensor_specs(cfg, false);
  EXPECT_NE(w.random_fill(specs[0])->seed, w.random_fill(specs[1])->seed);
  DummyWeights other(cfg, 4);
  EXPECT_NE(w.random_fill(specs[0])->seed, other.random_fill(specs[0])->seed);
}

}  // namespace
}  // namespace dsserve
