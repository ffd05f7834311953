// Golden tests through the CUDA backend: the fixture checkpoints (tiny-v3-bf16, tiny-v3-fp8, and
// the quantized tiny-v3-awq, tiny-v3-int8-channel, tiny-v3-int8-block) against their float32
// reference outputs, judged on the robust statistics of the issue (over
// each position's top-5 tokens: median and 90th percentile of |logprob difference|, top-1
// agreement where the reference top-1 margin exceeds 0.5), for one-shot prefill, chunked prefill
// followed by absorbed decode (and expanded decode, --disable-mla), and MTP; greedy continuations
// compared step by step; and decode through the KV cache against a fresh prefill on the same
// backend. The FP8 fixture runs twice: on the default kernels (the fused decode path: W8A8 decode
// linears, quantizing norms, fused MLP / MoE / router, latent prologue) and on the unfused ones
// (CudaBackend::set_fused_decode(false), the benchmarks' baseline), within the same bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "backend/cuda/cuda_backend.h"
#include "common/test_paths.h"
#include "gpu/gpu_test_util.h"
#include "io/safetensors.h"

namespace dsserve::test {
namespace {

constexpr int kPrompts = 5;

struct Bounds {
  double median, p90, agreement, greedy_margin;
};
// From the issue; BF16 arithmetic itself lands at about 0.021 / 0.11 / 96% and W8A8 at 0.13 / 0.58 / 94%
// (fixtures/README.md). A greedy divergence is accepted only where the reference margin is below greedy_margin.
const Bounds kBf16{0.04, 0.25, 0.92, 0.5};
const Bounds kFp8{0.25, 1.0, 0.88, 1.5};
// AWQ runs W4A16: the oracle's weights (up to its BF16 rounding of each) against BF16 activations,
// as the BF16 path. INT8 runs W8A8 with int8 activations (127 levels per token, or per token and
// 128 channels); measured on an H100 over every case below, both kernel sets: median at most 0.048,
// p90 at most 0.168, top-1 agreement at least 95.5% (channel INT8, chunked decode): about twice that.
const Bounds kAwq = kBf16;
const Bounds kInt8{0.1, 0.4, 0.92, 1.5};
bool w8a8(const std::string& fixture) { return fixture == "tiny-v3-fp8" || fixture.starts_with("tiny-v3-int8"); }
Bounds bounds_of(const std::string& fixture) {
  if (fixture == "tiny-v3-fp8") return kFp8;
  if (fixture == "tiny-v3-awq") return kAwq;
  if (fixture.starts_with("tiny-v3-int8")) return kInt8;
  return kBf16;
}

struct Golden {
  std::vector<int32_t> ids, greedy;
  std::vector<float> margin;
  std::vector<std::vector<float>> logits, mtp_logits;
};

Golden read_golden(const Checkpoint& ref, int k) {
  std::string p = "prompt." + std::to_string(k) + ".";
  Golden g;
  Tensor ids = ref.view(p + "ids"), greedy = ref.view(p + "greedy"), margin = ref.view(p + "greedy_margin");
  g.ids.assign(ids.ptr<int32_t>(), ids.ptr<int32_t>() + ids.numel());
  g.greedy.assign(greedy.ptr<int32_t>(), greedy.ptr<int32_t>() + greedy.numel());
  g.margin.assign(margin.ptr<float>(), margin.ptr<float>() + margin.numel());
  g.logits = rows_of(ref.view(p + "logits"));
  if (g.ids.size() > 1) g.mtp_logits = rows_of(ref.view(p + "mtp_logits"));
  return g;
}

class GpuGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    DS_REQUIRE_GPU();
    DS_REQUIRE_FIXTURES();
    if (unfused() && sm80_forced()) GTEST_SKIP() << "the sm80 kernel set has only the unfused decode kernels: the fp8 case runs them";
    std::string dir = fixtures_dir() + "/" + fixture();
    static std::map<std::string, std::shared_ptr<TestModel>> models;
    auto& m = models[GetParam()];
    if (!m) {  // the quantized fixtures on the W4A16 / W8A8 kernels (the default)
      m = std::make_shared<TestModel>(load_model_on(DeviceKind::Cuda, dir, 16, 2048));
      m->backend->set_fused_decode(!unfused() && !sm80_forced());
    }
    model_ = m.get();
    ref_ = std::make_unique<Checkpoint>(Checkpoint::open(dir + "/reference.safetensors"));
    bounds_ = bounds_of(fixture());
  }
  // The parameter: a fixture directory, with ":unfused" for the unfused decode kernels.
  std::string fixture() const { return GetParam().substr(0, GetParam().find(':')); }
  bool unfused() const { return GetParam().find(":unfused") != std::string::npos; }

  void expect_within(const LogprobStats& s, const std::string& what) {
    RecordProperty(what + "_median", std::to_string(s.quantile(0.5)));
    RecordProperty(what + "_p90", std::to_string(s.quantile(0.9)));
    RecordProperty(what + "_top1", std::to_string(s.agree) + "/" + std::to_string(s.confident));
    std::printf("[ stats    ] %s %s: %s\n", GetParam().c_str(), what.c_str(), s.str().c_str());
    EXPECT_LE(s.quantile(0.5), bounds_.median) << what << ": " << s.str();
    EXPECT_LE(s.quantile(0.9), bounds_.p90) << what << ": " << s.str();
    EXPECT_GE(s.agreement(), bounds_.agreement) << what << ": " << s.str();
  }

  TestModel* model_ = nullptr;
  std::unique_ptr<Checkpoint> ref_;
  Bounds bounds_{};
};

TEST_P(GpuGolden, LinearLayouts) {
  // How layer 1's linears run on the GPU (the fixture's dims are not all multiples of 128).
  Checkpoint ck = Checkpoint::open(fixtures_dir() + "/" + fixture());
  const ModelConfig cfg = ModelConfig::load(fixtures_dir() + "/" + fixture(), "",
                                            fixture_quantization(fixtures_dir() + "/" + fixture()));
  auto part = [&](const std::string& name) {  // as the loader reads each stored form
    const std::string prefix = name.substr(0, name.size() - 6);
    WeightPart p;
    p.name = name;
    if (ck.has(prefix + "qweight")) {
      p.format = WeightFormat::Awq;
      p.group_size = cfg.quantization->group_size;
      p.weight = ck.view(prefix + "qweight"), p.zeros = ck.view(prefix + "qzeros"), p.scale = ck.view(prefix + "scales");
      return p;
    }
    p.weight = ck.view(name);
    if (p.weight.dtype() == DType::F8_E4M3) p.scale = ck.view(prefix + "weight_scale_inv");
    if (p.weight.dtype() == DType::I8) {
      const bool channel = cfg.quantized_as(QuantMethod::ChannelInt8);
      p.format = channel ? WeightFormat::ChannelInt8 : WeightFormat::BlockInt8;
      p.scale = ck.view(prefix + (channel ? "weight_scale" : "weight_scale_inv"));
    }
    return p;
  };
  const std::string a = "model.layers.1.self_attn.", m = "model.layers.0.mlp.";
  std::map<std::string, std::vector<std::string>> linears{
      {"qkv_a", {a + "q_a_proj.weight", a + "kv_a_proj_with_mqa.weight"}},
      {"q_b", {a + "q_b_proj.weight"}},
      {"kv_b", {a + "kv_b_proj.weight"}},
      {"o_proj", {a + "o_proj.weight"}},
      {"dense_gate_up", {m + "gate_proj.weight", m + "up_proj.weight"}},
      {"dense_down", {m + "down_proj.weight"}}};
  auto& be = static_cast<cuda::CudaBackend&>(gpu());
  for (const auto& [name, parts] : linears) {
    std::vector<WeightPart> ps;
    for (const auto& n : parts) ps.push_back(part(n));
    std::string d = cuda::CudaBackend::describe(be.make_linear(ps, LinearUse::Projection));
    RecordProperty(name, d);
    std::printf("[ layout   ] %s %s: %s\n", GetParam().c_str(), name.c_str(), d.c_str());
  }
}

TEST_P(GpuGolden, PrefillLogits) {
  LogprobStats s;
  for (int k = 0; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    RunResult r = run_on(*model_, g.ids);
    ASSERT_EQ(r.logits.size(), g.logits.size());
    s.add(r.logits, g.logits);
  }
  expect_within(s, "prefill");
}

TEST_P(GpuGolden, ChunkedPrefillThenAbsorbedDecode) {
  LogprobStats s;
  for (int chunk : {7, 64})
    for (int k = 0; k < kPrompts; ++k) {
      Golden g = read_golden(*ref_, k);
      RunResult r = run_on(*model_, g.ids, RunOptions{chunk, int(g.ids.size()) / 2});
      ASSERT_EQ(r.logits.size(), g.logits.size());
      s.add(r.logits, g.logits);
    }
  expect_within(s, "chunked_decode");
}

// --disable-mla: decode through the non-absorbed attention on the GPU (the expanded prefill kernel
// over one query token per sequence), judged against the reference like the absorbed decode.
TEST_P(GpuGolden, ChunkedPrefillThenExpandedDecode) {
  LogprobStats s;
  for (int chunk : {7, 64})
    for (int k = 0; k < kPrompts; ++k) {
      Golden g = read_golden(*ref_, k);
      RunOptions opt{chunk, int(g.ids.size()) / 2, AttentionMode::Expanded, AttentionMode::Expanded};
      RunResult r = run_on(*model_, g.ids, opt);
      ASSERT_EQ(r.logits.size(), g.logits.size());
      s.add(r.logits, g.logits);
    }
  expect_within(s, "chunked_expanded_decode");
}

TEST_P(GpuGolden, MtpLogitsFromReferenceHidden) {
  // The MTP module alone: fed the reference's own final hidden states, as the reference MTP logits were.
  ASSERT_TRUE(model_->model->has_mtp());
  LogprobStats s;
  for (int k = 1; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    auto mtp = run_mtp_on(*model_, g.ids, rows_of(ref_->view("prompt." + std::to_string(k) + ".hidden")));
    ASSERT_EQ(mtp.size(), g.mtp_logits.size());
    s.add(mtp, g.mtp_logits);
  }
  expect_within(s, "mtp_ref_hidden");
}

TEST_P(GpuGolden, MtpLogitsEndToEnd) {
  // MTP on this backend's own hidden states: the main model's error and the MTP module's compound,
  // so top-1 agreement is reported, not held to the single-pass bound; median and p90 are.
  ASSERT_TRUE(model_->model->has_mtp());
  LogprobStats s;
  for (int k = 1; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    RunResult r = run_on(*model_, g.ids);
    auto mtp = run_mtp_on(*model_, g.ids, r.hidden);
    ASSERT_EQ(mtp.size(), g.mtp_logits.size());
    s.add(mtp, g.mtp_logits);
  }
  RecordProperty("mtp_e2e_median", std::to_string(s.quantile(0.5)));
  RecordProperty("mtp_e2e_p90", std::to_string(s.quantile(0.9)));
  RecordProperty("mtp_e2e_top1", std::to_string(s.agree) + "/" + std::to_string(s.confident));
  std::printf("[ stats    ] %s mtp_end_to_end: %s\n", GetParam().c_str(), s.str().c_str());
  EXPECT_LE(s.quantile(0.5), bounds_.median) << s.str();
  EXPECT_LE(s.quantile(0.9), bounds_.p90) << s.str();
}

TEST_P(GpuGolden, GreedyMatchesUntilALowMarginStep) {
  int matched = 0, total = 0;
  for (int k = 0; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    std::vector<int32_t> got = greedy_on(*model_, g.ids, int(g.greedy.size()));
    size_t i = 0;
    while (i < got.size() && got[i] == g.greedy[i]) ++i;
    matched += int(i);
    total += int(g.greedy.size());
    if (i < got.size()) {
      EXPECT_LT(g.margin[i], bounds_.greedy_margin)
          << "prompt " << k << " diverges at step " << i << " where the reference margin is " << g.margin[i];
    }
  }
  RecordProperty("greedy_steps_matched", std::to_string(matched) + "/" + std::to_string(total));
}

TEST_P(GpuGolden, DecodeThroughCacheMatchesPrefill) {
  // Same backend, same prompt: one-shot expanded prefill vs token-by-token absorbed decode. The two
  // forms round differently in BF16, which the BF16 model keeps small (held to the BF16 bound).
  // Under W8A8 the activation re-quantization and the chaotic routing turn any such difference into
  // a W8A8-sized one, so the comparison is between two equally noisy runs: for FP8 and INT8 it is
  // reported only, and decode is judged against the reference instead (ChunkedPrefillThenAbsorbedDecode).
  LogprobStats s;
  for (int k = 2; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    RunResult whole = run_on(*model_, g.ids);
    RunResult dec = run_on(*model_, g.ids, RunOptions{0, 1});
    s.add(dec.logits, whole.logits);
  }
  RecordProperty("decode_vs_prefill_median", std::to_string(s.quantile(0.5)));
  std::printf("[ stats    ] %s decode_vs_prefill: %s\n", GetParam().c_str(), s.str().c_str());
  RecordProperty("decode_vs_prefill_p90", std::to_string(s.quantile(0.9)));
  RecordProperty("decode_vs_prefill_top1", std::to_string(s.agree) + "/" + std::to_string(s.confident));
  if (w8a8(fixture())) return;
  EXPECT_LE(s.quantile(0.5), kBf16.median) << s.str();
  EXPECT_LE(s.quantile(0.9), kBf16.p90) << s.str();
  EXPECT_GE(s.agreement(), kBf16.agreement) << s.str();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuGolden,
                         ::testing::Values("tiny-v3-bf16", "tiny-v3-fp8", "tiny-v3-fp8:unfused", "tiny-v3-awq",
                                           "tiny-v3-int8-channel", "tiny-v3-int8-block"),
                         [](const auto& info) {
                           if (info.param == "tiny-v3-fp8:unfused") return std::string("fp8_unfused_decode");
                           std::string name = info.param.substr(std::string("tiny-v3-").size());
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace dsserve::test
