// Golden tests: the CPU backend against the float32 reference outputs of the fixture checkpoints
// (tiny-v3-bf16, tiny-v3-fp8, and the quantized tiny-v3-awq, tiny-v3-int8-channel and
// tiny-v3-int8-block at KV page sizes 1 and 64): logits at every position from one prefill, from
// chunked prefill followed by token-by-token absorbed decode (and expanded decode, --disable-mla),
// greedy continuations, final hidden states, MTP logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "common/test_paths.h"
#include "io/safetensors.h"
#include "model/model_test_util.h"

namespace dsserve::test {
namespace {

constexpr double kLogprobTolerance = 2e-3;  // largest |logprob difference| over each position's top-5
constexpr int kPrompts = 5;

struct Golden {
  std::vector<int32_t> ids, greedy;
  std::vector<std::vector<float>> logits, hidden, mtp_logits;
};

std::vector<int32_t> ints(const Tensor& t) { return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()}; }

Golden read_golden(const Checkpoint& ref, int k) {
  std::string p = "prompt." + std::to_string(k) + ".";
  Golden g;
  g.ids = ints(ref.view(p + "ids"));
  g.greedy = ints(ref.view(p + "greedy"));
  g.logits = rows_of(ref.view(p + "logits"));
  g.hidden = rows_of(ref.view(p + "hidden"));
  if (g.ids.size() > 1) g.mtp_logits = rows_of(ref.view(p + "mtp_logits"));
  return g;
}

struct GoldenCase {
  std::string fixture;
  int page_size = 16;
};

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {
 protected:
  void SetUp() override {
    DS_REQUIRE_FIXTURES();
    std::string dir = fixtures_dir() + "/" + GetParam().fixture;
    static std::map<std::pair<std::string, int>, std::shared_ptr<TestModel>> models;
    auto& m = models[{GetParam().fixture, GetParam().page_size}];
    if (!m) m = std::make_shared<TestModel>(load_checkpoint_model(dir, GetParam().page_size, 1024));
    model_ = m.get();
    ref_ = std::make_unique<Checkpoint>(Checkpoint::open(dir + "/reference.safetensors"));
  }

  void expect_logits_match(const std::vector<std::vector<float>>& got, const Golden& g, const std::string& what) {
    ASSERT_EQ(got.size(), g.logits.size()) << what;
    double worst = 0;
    size_t worst_pos = 0;
    for (size_t t = 0; t < got.size(); ++t) {
      double d = max_topk_logprob_diff(got[t], g.logits[t]);
      if (d > worst) worst = d, worst_pos = t;
    }
    EXPECT_LE(worst, kLogprobTolerance) << what << ": worst top-5 logprob difference at position " << worst_pos;
    RecordProperty(what, std::to_string(worst));
  }

  TestModel* model_ = nullptr;
  std::unique_ptr<Checkpoint> ref_;
};

TEST_P(GoldenTest, PrefillLogitsAndHiddenAtEveryPosition) {
  for (int k = 0; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    RunResult r = run_sequence(*model_, g.ids);
    expect_logits_match(r.logits, g, "prompt " + std::to_string(k) + " prefill");
    EXPECT_LE(max_abs_diff(r.hidden, g.hidden), 2e-3) << "prompt " << k << " final hidden states";
  }
}

TEST_P(GoldenTest, ChunkedPrefillThenAbsorbedDecode) {
  for (int chunk : {7, 64}) {
    for (int k = 0; k < kPrompts; ++k) {
      Golden g = read_golden(*ref_, k);
      // The first half of the prompt in chunks, the rest one token per forward through the cache.
      RunOptions opt{chunk, int(g.ids.size()) / 2};
      RunResult r = run_sequence(*model_, g.ids, opt);
      expect_logits_match(r.logits, g, "prompt " + std::to_string(k) + " chunk " + std::to_string(chunk));
    }
  }
}

// --disable-mla: decode through the non-absorbed attention (keys and values up-projected from the
// cached latent, as prefill) matches the reference as the absorbed decode does, and the absorbed
// decode's logits position by position.
TEST_P(GoldenTest, ChunkedPrefillThenExpandedDecode) {
  for (int k = 0; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    RunOptions expanded{7, int(g.ids.size()) / 2, AttentionMode::Expanded, AttentionMode::Expanded};
    RunOptions absorbed{7, int(g.ids.size()) / 2};
    RunResult e = run_sequence(*model_, g.ids, expanded), a = run_sequence(*model_, g.ids, absorbed);
    expect_logits_match(e.logits, g, "prompt " + std::to_string(k) + " expanded decode");
    ASSERT_EQ(e.logits.size(), a.logits.size());
    double worst = 0;
    for (size_t t = 0; t < e.logits.size(); ++t) worst = std::max(worst, max_topk_logprob_diff(e.logits[t], a.logits[t]));
    EXPECT_LE(worst, 1e-3) << "prompt " << k << ": expanded against absorbed decode";
  }
}

TEST_P(GoldenTest, GreedyContinuationMatchesExactly) {
  for (int k = 0; k < kPrompts; ++k) {
    Golden g = read_golden(*ref_, k);
    EXPECT_EQ(greedy(*model_, g.ids, int(g.greedy.size())), g.greedy) << "prompt " << k;
  }
}

TEST_P(GoldenTest, MtpLogits) {
  ASSERT_TRUE(model_->model->has_mtp());
  for (int k = 1; k < kPrompts; ++k) {  // prompt 0 has one token: no MTP row
    Golden g = read_golden(*ref_, k);
    RunResult r = run_sequence(*model_, g.ids);
    auto mtp = run_mtp(*model_, g.ids, r.hidden);
    ASSERT_EQ(mtp.size(), g.mtp_logits.size());
    double worst = 0;
    for (size_t t = 0; t < mtp.size(); ++t) worst = std::max(worst, max_topk_logprob_diff(mtp[t], g.mtp_logits[t]));
    EXPECT_LE(worst, kLogprobTolerance) << "prompt " << k << " MTP logits";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values(GoldenCase{"tiny-v3-bf16"}, GoldenCase{"tiny-v3-fp8"},
                                           GoldenCase{"tiny-v3-awq", 1}, GoldenCase{"tiny-v3-awq", 64},
                                           GoldenCase{"tiny-v3-int8-channel", 1}, GoldenCase{"tiny-v3-int8-channel", 64},
                                           GoldenCase{"tiny-v3-int8-block", 1}, GoldenCase{"tiny-v3-int8-block", 64}),
                         [](const auto& info) {
                           std::string name = info.param.fixture.substr(std::string("tiny-v3-").size());
                           std::replace(name.begin(), name.end(), '-', '_');
                           return info.param.page_size == 16 ? name : name + "_page" + std::to_string(info.param.page_size);
                         });

}  // namespace
}  // namespace dsserve::test
