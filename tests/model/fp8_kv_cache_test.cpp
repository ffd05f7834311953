// The FP8 latent cache (--kv-cache-dtype fp8_e4m3 / fp8_e5m2, scale 1.0) on the CPU oracle, against
// the fixtures' float32 reference: logits at every position (one prefill, and chunked prefill then
// absorbed decode) within bounds measured for each format (median / p90 of top-5 |logprob
// difference|, top-1 agreement), greedy continuations that leave the reference only at low-margin
// steps, the cache really one byte per value (the MTP cache too), and the rounding really applied
// (logits differ from a float32 cache's). Also the --kv-cache-dtype values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "common/test_paths.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/kv_cache_dtype.h"
#include "model/model_test_util.h"

namespace dsserve::test {
namespace {

constexpr int kPrompts = 5;

// Bounds over each position's top-5 reference tokens (Stats below), measured on both fixtures with
// one prefill and with chunked prefill then absorbed decode (the two agree to 4 digits):
//   e4m3: median 0.065 / 0.056, p90 0.30 / 0.23, top-1 97% / 96% (bf16 / fp8 fixture)
//   e5m2: median 0.125 / 0.125, p90 0.56 / 0.65, top-1 90% / 88%
// For scale: the float32 cache stays within 2e-3 of the reference everywhere (golden_test.cpp), and
// BF16 arithmetic on the GPU lands at about 0.021 / 0.11 / 96%, W8A8 at 0.13 / 0.58 / 94%
// (fixtures/README.md): the tiny random models amplify any rounding (routing flips), so the largest
// single difference (3.4 to 5.1 here) is no measure. e4m3's 3 mantissa bits cost about what W8A8
// costs; e5m2's 2 cost twice that.
struct Bounds {
  double median, p90, agreement;
  double greedy_margin;  // a greedy divergence is accepted only where the reference's margin is below this
};
Bounds bounds_for(DType t) { return t == DType::F8_E4M3 ? Bounds{0.09, 0.40, 0.94, 1.5} : Bounds{0.17, 0.85, 0.84, 1.5}; }

std::vector<int32_t> ints(const Tensor& t) { return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()}; }

std::vector<double> log_softmax(const std::vector<float>& x) {
  double mx = *std::max_element(x.begin(), x.end()), s = 0;
  for (float v : x) s += std::exp(v - mx);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - mx - std::log(s);
  return out;
}

// Robust statistics over each position's top-5 reference tokens: |logprob difference| quantiles, and
// top-1 agreement where the reference's top-1 margin exceeds 0.5 (as the GPU golden tests judge).
struct Stats {
  std::vector<double> diffs;
  int agree = 0, confident = 0;
  void add(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& ref) {
    for (size_t t = 0; t < ref.size(); ++t) {
      auto lg = log_softmax(got[t]), lr = log_softmax(ref[t]);
      std::vector<size_t> idx(ref[t].size());
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](size_t a, size_t b) { return ref[t][a] > ref[t][b]; });
      for (int i = 0; i < 5; ++i) diffs.push_back(std::fabs(lg[idx[i]] - lr[idx[i]]));
      if (ref[t][idx[0]] - ref[t][idx[1]] > 0.5f) {
        ++confident;
        agree += std::max_element(got[t].begin(), got[t].end()) - got[t].begin() == std::ptrdiff_t(idx[0]);
      }
    }
  }
  double quantile(double q) const {
    std::vector<double> d = diffs;
    std::sort(d.begin(), d.end());
    return d.empty() ? 0 : d[size_t(q * double(d.size() - 1))];
  }
  double agreement() const { return confident ? double(agree) / confident : 1.0; }
  std::string str() const {
    char b[160];
    std::snprintf(b, sizeof(b), "median %.4f p90 %.4f max %.4f top-1 %d/%d", quantile(0.5), quantile(0.9), quantile(1.0),
                  agree, confident);
    return b;
  }
};

struct Fp8Case {
  std::string fixture;
  DType cache_dtype;
};

std::string case_name(const ::testing::TestParamInfo<Fp8Case>& info) {
  return std::string(info.param.fixture == "tiny-v3-bf16" ? "bf16_" : "fp8_") +
         (info.param.cache_dtype == DType::F8_E4M3 ? "e4m3" : "e5m2");
}

class Fp8KvCacheGolden : public ::testing::TestWithParam<Fp8Case> {
 protected:
  void SetUp() override {
    DS_REQUIRE_FIXTURES();
    dir_ = fixtures_dir() + "/" + GetParam().fixture;
    static std::map<std::pair<std::string, int>, std::shared_ptr<TestModel>> models;
    auto& m = models[{GetParam().fixture, int(GetParam().cache_dtype)}];
    if (!m) m = std::make_shared<TestModel>(load_checkpoint_model(dir_, 16, 1024, GetParam().cache_dtype));
    model_ = m.get();
    ref_ = std::make_unique<Checkpoint>(Checkpoint::open(dir_ + "/reference.safetensors"));
  }
  std::vector<int32_t> ids(int k) { return ints(ref_->view("prompt." + std::to_string(k) + ".ids")); }
  std::vector<int32_t> greedy_ref(int k) { return ints(ref_->view("prompt." + std::to_string(k) + ".greedy")); }
  std::vector<std::vector<float>> logits_ref(int k) {
    return rows_of(ref_->view("prompt." + std::to_string(k) + ".logits"));
  }

  std::string dir_;
  TestModel* model_ = nullptr;
  std::unique_ptr<Checkpoint> ref_;
};

TEST_P(Fp8KvCacheGolden, CacheHoldsOneBytePerValue) {
  const Tensor& c = model_->cache.data;
  EXPECT_EQ(c.dtype(), GetParam().cache_dtype);
  EXPECT_EQ(dtype_size(c.dtype()), 1u);
  EXPECT_EQ(c.size(2), model_->model->config().latent_dim());
  ASSERT_TRUE(model_->model->has_mtp());
  EXPECT_EQ(model_->mtp_cache.data.dtype(), GetParam().cache_dtype) << "the MTP cache follows the target's dtype";
}

TEST_P(Fp8KvCacheGolden, LogitsCloseToTheFloat32Reference) {
  const Bounds bound = bounds_for(GetParam().cache_dtype);
  Stats prefill, decode;
  double forms = 0;
  for (int k = 0; k < kPrompts; ++k) {
    const auto want = logits_ref(k);
    const auto ids_k = ids(k);
    RunResult a = run_sequence(*model_, ids_k);
    RunResult b = run_sequence(*model_, ids_k, RunOptions{7, int(ids_k.size()) / 2});
    ASSERT_EQ(a.logits.size(), want.size());
    ASSERT_EQ(b.logits.size(), want.size());
    prefill.add(a.logits, want);
    decode.add(b.logits, want);
    // Both attention forms read the same FP8 values (gathered keys, the absorbed kernel's reads), so
    // they agree far more closely than either agrees with the reference (median error 0.02-0.12):
    // only the forms' float32 differences in one layer occasionally move a later latent across an
    // FP8 rounding boundary, a step twice as large in e5m2 (2 mantissa bits) as in e4m3 (measured up
    // to 2.9e-3 with e4m3 and 1.3e-2 with e5m2 on the fixtures); a form that read unrounded values
    // would differ by the FP8 error itself.
    for (size_t t = 0; t < want.size(); ++t) forms = std::max(forms, max_topk_logprob_diff(b.logits[t], a.logits[t]));
  }
  const double forms_bound = GetParam().cache_dtype == DType::F8_E5M2 ? 2.5e-2 : 1e-2;
  EXPECT_LE(forms, forms_bound) << "one prefill vs chunked prefill + absorbed decode over the same FP8 cache";
  RecordProperty("prefill_vs_decode", std::to_string(forms));
  const std::string name = case_name({GetParam(), 0});
  std::printf("[ stats    ] %s prefill vs chunked + decode: %.2e\n", name.c_str(), forms);
  for (const auto& [what, s] : {std::pair<const char*, const Stats&>{"prefill", prefill}, {"chunked_decode", decode}}) {
    std::printf("[ stats    ] %s %s: %s\n", name.c_str(), what, s.str().c_str());
    RecordProperty(std::string(what) + "_median", std::to_string(s.quantile(0.5)));
    RecordProperty(std::string(what) + "_p90", std::to_string(s.quantile(0.9)));
    EXPECT_LE(s.quantile(0.5), bound.median) << what << ": " << s.str();
    EXPECT_LE(s.quantile(0.9), bound.p90) << what << ": " << s.str();
    EXPECT_GE(s.agreement(), bound.agreement) << what << ": " << s.str();
  }
}

TEST_P(Fp8KvCacheGolden, GreedyContinuationDivergesOnlyAtLowMargins) {
  // The fixtures' continuations have many near ties (reference margins below 0.1), so any rounding
  // changes them early; what must hold is that each one follows the reference until a step whose
  // reference margin is small (teacher-forced top-1 agreement is checked above).
  const Bounds bound = bounds_for(GetParam().cache_dtype);
  int matched = 0, total = 0;
  for (int k = 0; k < kPrompts; ++k) {
    const auto want = greedy_ref(k);
    Tensor margin = ref_->view("prompt." + std::to_string(k) + ".greedy_margin");
    const auto got = greedy(*model_, ids(k), int(want.size()));
    size_t same = 0;
    while (same < want.size() && got[same] == want[same]) ++same;
    matched += int(same);
    total += int(want.size());
    if (same < want.size()) {
      EXPECT_LT(margin.ptr<float>()[same], bound.greedy_margin)
          << "prompt " << k << " diverges at step " << same << " where the reference margin is "
          << margin.ptr<float>()[same];
    }
  }
  std::printf("[ stats    ] %s greedy tokens equal before the first difference: %d of %d\n",
              case_name({GetParam(), 0}).c_str(), matched, total);
  RecordProperty("greedy_steps_matched", std::to_string(matched) + "/" + std::to_string(total));
}

TEST_P(Fp8KvCacheGolden, RoundingChangesTheLogits) {
  // The same prompt through a float32 cache: an FP8 cache must not be a float cache in disguise.
  TestModel plain = load_checkpoint_model(dir_, 16, 256);
  const auto ids_k = ids(3);
  const auto a = run_sequence(*model_, ids_k).logits, b = run_sequence(plain, ids_k).logits;
  EXPECT_GT(max_abs_diff(a, b), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Fp8KvCacheGolden,
                         ::testing::Values(Fp8Case{"tiny-v3-bf16", DType::F8_E4M3}, Fp8Case{"tiny-v3-fp8", DType::F8_E4M3},
                                           Fp8Case{"tiny-v3-bf16", DType::F8_E5M2}, Fp8Case{"tiny-v3-fp8", DType::F8_E5M2}),
                         case_name);

TEST(KvCacheDtype, FlagValues) {
  EXPECT_FALSE(parse_kv_cache_dtype("auto").has_value());
  EXPECT_FALSE(parse_kv_cache_dtype("bf16").has_value());
  EXPECT_FALSE(parse_kv_cache_dtype("bfloat16").has_value());
  EXPECT_EQ(parse_kv_cache_dtype("fp8_e4m3"), DType::F8_E4M3);
  EXPECT_EQ(parse_kv_cache_dtype("fp8_e5m2"), DType::F8_E5M2);
  try {
    parse_kv_cache_dtype("fp4_e2m1");
    ADD_FAILURE() << "fp4_e2m1 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-cache-dtype"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fp4_e2m1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kv_cache_dtype_name(DType::F8_E4M3), "fp8_e4m3");
  EXPECT_EQ(kv_cache_dtype_name(DType::BF16), "bf16");
}

}  // namespace
}  // namespace dsserve::test
