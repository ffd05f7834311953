// `dsserve quantize` (model/checkpoint_quantizer.h): each quantizer's values within half a step of
// the weight they came from (and AutoAWQ's nibble order, read back through the loader's own
// dequantization); the round trip of the BF16 fixture (tiny-v3-bf16) and of the FP8 one into AWQ,
// channel INT8 and block INT8 checkpoints that load as published (shards, index, config) and whose
// logits on the CPU oracle stay within each format's bounds of the source's reference: median and 90th
// percentile of |dlogprob| over each position's top-5, top-1 agreement where the reference margin
// exceeds 0.5, greedy continuations that may only part where the reference margin is small. The
// bounds are the measured figures of these fixed inputs with some room (RTN 4-bit weights of a
// random model move its logits far more than 8-bit ones).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/weight_dequant.h"
#include "common/test_paths.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/checkpoint_quantizer.h"
#include "model/model_test_util.h"

namespace fs = std::filesystem;

namespace dsserve::test {
namespace {

Tensor random_weight(int64_t out, int64_t in, uint64_t seed) {
  std::mt19937 rng{static_cast<uint32_t>(seed)};
  std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(in)));
  Tensor w = Tensor::zeros_host(DType::F32, {out, in});
  for (int64_t i = 0; i < w.numel(); ++i) w.ptr<float>()[i] = bf16_to_f32(f32_to_bf16(nd(rng)));
  return w;
}

TEST(Quantize, AwqValuesWithinOneStepAndPackedAsAutoAwq) {
  for (int64_t group : {64, 128}) {
    const int64_t out = 48, in = 256;
    Tensor w = random_weight(out, in, 3 + uint64_t(group));
    WeightPart q = quantize_awq(w, group, "layer.q_proj.weight");
    ASSERT_EQ(q.weight.shape(), Shape({in, out / 8}));
    ASSERT_EQ(q.zeros.shape(), Shape({in / group, out / 8}));
    ASSERT_EQ(q.scale.shape(), Shape({in / group, out}));
    Tensor d = dequantize_to_f32(q);
    double worst = 0;
    for (int64_t j = 0; j < out; ++j)
      for (int64_t k = 0; k < in; ++k) {
        const float s = f16_to_f32(q.scale.ptr<uint16_t>()[(k / group) * out + j]);
        const float err = std::fabs(d.ptr<float>()[j * in + k] - w.ptr<float>()[j * in + k]);
        worst = std::max(worst, double(err / s));
        // round-to-nearest: half a step (a little more at the range's top, where the F16 scale's own
        // rounding can push the largest value past 15 and the clamp takes it back), plus the BF16 rounding
        EXPECT_LE(err, 0.51f * s + std::fabs(w.ptr<float>()[j * in + k]) / 128.0f + 1e-7f) << j << ", " << k;
      }
    RecordProperty("worst_error_in_steps_g" + std::to_string(group), std::to_string(worst));
    // Column 8c + j of a packed int32 is nibble [0, 4, 1, 5, 2, 6, 3, 7][j]: column 1 is bits 16..19.
    const uint32_t word = uint32_t(q.weight.ptr<int32_t>()[0]);
    EXPECT_EQ(awq_nibble(q.weight.ptr<int32_t>(), 1), int((word >> 16) & 0xF));
  }
  EXPECT_THROW(quantize_awq(random_weight(16, 96, 1), 64, "x"), Error);  // 64 does not divide 96
}

TEST(Quantize, GroupSizeThatDoesNotDivideIsAnErrorNamingTheTensor) {
  DS_REQUIRE_FIXTURES();
  QuantizeOptions o;
  o.input_dir = fixtures_dir() + "/tiny-v3-bf16";  // q_b_proj has 192 input channels
  o.output_dir = temp_dir("quantize");
  o.method = QuantMethod::Awq;
  o.group_size = 128;
  try {
    quantize_checkpoint(o);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_b_proj.weight: --group-size 128 does not divide the input width 192"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(o.output_dir);
}

TEST(Quantize, Int8ValuesWithinHalfAStep) {
  for (bool channel : {true, false}) {
    const int64_t out = 200, in = 320;  // partial 128-blocks both ways
    Tensor w = random_weight(out, in, channel ? 5 : 6);
    WeightPart q = quantize_int8(w, channel, "layer.o_proj.weight");
    EXPECT_EQ(q.scale.shape(), channel ? Shape({out, 1}) : Shape({2, 3}));
    Tensor d = dequantize_to_f32(q);
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c = 0; c < in; ++c) {
        const float s = channel ? q.scale.ptr<float>()[r] : q.scale.ptr<float>()[(r / 128) * 3 + c / 128];
        EXPECT_LE(std::fabs(d.ptr<float>()[r * in + c] - w.ptr<float>()[r * in + c]),
                  0.5f * s + std::fabs(w.ptr<float>()[r * in + c]) / 128.0f + 1e-7f);
      }
  }
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5))];
}

std::vector<double> log_softmax(const std::vector<float>& x) {
  double mx = *std::max_element(x.begin(), x.end()), s = 0;
  for (float v : x) s += std::exp(v - mx);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - mx - std::log(s);
  return out;
}

struct Bounds {
  double median, p90, agreement, greedy_margin;
};

struct RoundTrip {
  std::string source, method;
  int group;
  Bounds bounds;
};

class QuantizeRoundTrip : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(QuantizeRoundTrip, LoadsAndStaysWithinBounds) {
  DS_REQUIRE_FIXTURES();
  const RoundTrip rt = GetParam();
  const std::string in = fixtures_dir() + "/" + rt.source, out = temp_dir("quantize");
  QuantizeOptions o;
  o.input_dir = in;
  o.output_dir = out;
  o.method = rt.method == "awq" ? QuantMethod::Awq : rt.method == "w8a8_int8" ? QuantMethod::ChannelInt8
                                                                              : QuantMethod::BlockInt8;
  o.group_size = rt.group;
  quantize_checkpoint(o);

  // The layout: the input's shard files and index, the method in config.json.
  Checkpoint src = Checkpoint::open(in), dst = Checkpoint::open(out);
  EXPECT_EQ(dst.files().size(), src.files().size());
  EXPECT_TRUE(fs::exists(fs::path(out) / "model.safetensors.index.json"));
  const ModelConfig cfg = ModelConfig::load(out);
  ASSERT_TRUE(cfg.quantization.has_value());
  EXPECT_EQ(quant_method_name(cfg.quantization->method), rt.method);
  const std::string q = "model.layers.1.self_attn.q_b_proj.";
  if (rt.method == "awq") {
    EXPECT_EQ(cfg.quantization->group_size, rt.group);
    EXPECT_EQ(dst.info(q + "qweight").dtype, DType::I32);
    EXPECT_FALSE(dst.has(q + "weight"));
    EXPECT_EQ(dst.info("model.layers.3.self_attn.q_b_proj.weight").dtype, DType::BF16) << "the MTP layer stays BF16";
  } else {
    EXPECT_EQ(dst.info(q + "weight").dtype, DType::I8);
    EXPECT_TRUE(dst.has(q + (rt.method == "w8a8_int8" ? "weight_scale" : "weight_scale_inv")));
  }
  EXPECT_EQ(dst.info("model.embed_tokens.weight").dtype, DType::BF16);
  EXPECT_EQ(dst.info("model.layers.1.mlp.gate.weight").dtype, DType::BF16);

  // The model on the CPU oracle against the BF16 reference.
  TestModel m = load_checkpoint_model(out, 16, 1024);
  Checkpoint ref = Checkpoint::open(in + "/reference.safetensors");
  std::vector<double> diffs;
  int agree = 0, confident = 0, matched = 0, steps = 0;
  double parted_margin = 0;  // the largest reference margin where a greedy continuation parted
  for (int k = 0; k < 5; ++k) {
    const std::string p = "prompt." + std::to_string(k) + ".";
    Tensor ids_t = ref.view(p + "ids"), greedy_t = ref.view(p + "greedy"), margin_t = ref.view(p + "greedy_margin");
    std::vector<int32_t> ids(ids_t.ptr<int32_t>(), ids_t.ptr<int32_t>() + ids_t.numel());
    RunResult r = run_sequence(m, ids);
    auto want = rows_of(ref.view(p + "logits"));
    for (size_t t = 0; t < want.size(); ++t) {
      const auto a = log_softmax(r.logits[t]), b = log_softmax(want[t]);
      std::vector<int> order(b.size());
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + 5, order.end(), [&](int x, int y) { return b[x] > b[y]; });
      for (int i = 0; i < 5; ++i) diffs.push_back(std::fabs(a[order[i]] - b[order[i]]));
      if (b[order[0]] - b[order[1]] > 0.5) {
        ++confident;
        agree += std::max_element(a.begin(), a.end()) - a.begin() == order[0];
      }
    }
    std::vector<int32_t> got = greedy(m, ids, int(greedy_t.numel()));
    size_t i = 0;
    while (i < got.size() && got[i] == greedy_t.ptr<int32_t>()[i]) ++i;
    matched += int(i), steps += int(got.size());
    if (i < got.size()) {
      parted_margin = std::max(parted_margin, double(margin_t.ptr<float>()[i]));
      EXPECT_LT(margin_t.ptr<float>()[i], rt.bounds.greedy_margin)
          << rt.method << " prompt " << k << " parts from the reference at step " << i;
    }
  }
  const double median = quantile(diffs, 0.5), p90 = quantile(diffs, 0.9);
  const double agreement = confident ? double(agree) / confident : 1.0;
  std::printf("[ stats    ] %s -> %s: median %.4f p90 %.4f top1 %d/%d greedy %d/%d (parted at margins up to %.3f)\n",
              rt.source.c_str(), rt.method.c_str(), median, p90, agree, confident, matched, steps, parted_margin);
  EXPECT_LE(median, rt.bounds.median);
  EXPECT_LE(p90, rt.bounds.p90);
  EXPECT_GE(agreement, rt.bounds.agreement);
  fs::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantizeRoundTrip,
                         // Measured: AWQ 0.58 / 1.80 / 54% (greedy parted at margins up to 0.42; from the FP8
                         // fixture 0.61 / 1.75 / 54%, 0.76), channel INT8 0.040 / 0.18 / 96% (0.38), block INT8
                         // 0.061 / 0.31 / 95% (0.38): a 128 x 128 block's scale is coarser than a row's.
                         ::testing::Values(RoundTrip{"tiny-v3-bf16", "awq", 64, {0.8, 2.4, 0.45, 1.5}},
                                           RoundTrip{"tiny-v3-bf16", "w8a8_int8", 0, {0.06, 0.3, 0.92, 0.6}},
                                           RoundTrip{"tiny-v3-bf16", "blockwise_int8", 0, {0.09, 0.45, 0.92, 0.6}},
                                           RoundTrip{"tiny-v3-fp8", "awq", 64, {0.8, 2.4, 0.45, 1.5}}),
                         [](const auto& info) {
                           std::string s = (info.param.source == "tiny-v3-bf16" ? "bf16_to_" : "fp8_to_") +
                                           info.param.method;
                           if (info.param.method == "awq") s += "_g" + std::to_string(info.param.group);
                           return s;
                         });

}  // namespace
}  // namespace dsserve::test
