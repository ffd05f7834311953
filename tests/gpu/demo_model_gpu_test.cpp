// The shipped demo model (models/demo: trained, block-FP8) through the CUDA backend with an FP8
// latent cache against the CPU oracle on held-back King James text: logprob statistics over each
// position's top 5, perplexity, the MTP layer's logits, and the greedy continuation of Genesis 1:1
// (W8A8 GEMMs and the e4m3 cache, as served with --kv-cache-dtype fp8_e4m3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "gpu/gpu_test_util.h"
#include "text/tokenizer.h"

namespace dsserve::test {
namespace {

// models/demo: $DSSERVE_DEMO_MODEL, else the source tree's, else the current directory's (the
// device machine runs the bundle from a copy of the repository root); empty when none holds it.
std::string demo_dir() {
  namespace fs = std::filesystem;
  const char* e = std::getenv("DSSERVE_DEMO_MODEL");
  for (fs::path p : {fs::path(e ? e : ""), fs::path(DSSERVE_SOURCE_DIR) / "models/demo", fs::path("models/demo")})
    if (!p.empty() && fs::exists(p / "config.json")) return fs::absolute(p).string();
  return "";
}

// Held back from training (tools/demo-model/kjv_corpus.py: Genesis 21 and Judges 10).
const char* kHeldBack[] = {
    "And the LORD visited Sarah as he had said, and the LORD did unto Sarah as he had spoken.\n"
    "For Sarah conceived, and bare Abraham a son in his old age, at the set time of which God had spoken to him.\n"
    "And Abraham called the name of his son that was born unto him, whom Sarah bare to him, Isaac.",
    "And after Abimelech there arose to defend Israel Tola the son of Puah, the son of Dodo, a man of Issachar; "
    "and he dwelt in Shamir in mount Ephraim.\nAnd he judged Israel twenty and three years, and died, and was "
    "buried in Shamir.",
};

double log_softmax_at(const std::vector<float>& row, int32_t id) {
  double m = *std::max_element(row.begin(), row.end()), s = 0;
  for (float v : row) s += std::exp(double(v) - m);
  return double(row[size_t(id)]) - m - std::log(s);
}

class DemoModelGpu : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = demo_dir();
    if (!gpu_available() || dir_.empty()) return;
    tok_ = std::make_unique<text::Tokenizer>(text::Tokenizer::load(dir_));
    cpu_ = std::make_unique<TestModel>(load_model_on(DeviceKind::Cpu, dir_, 16, 2048));
    gpu_ = std::make_unique<TestModel>(load_model_on(DeviceKind::Cuda, dir_, 16, 2048, DType::F8_E4M3));
  }
  static void TearDownTestSuite() {
    cpu_.reset();
    gpu_.reset();
  }
  void SetUp() override {
    DS_REQUIRE_GPU();
    if (dir_.empty()) GTEST_SKIP() << "models/demo not found (set DSSERVE_DEMO_MODEL or run from the repository root)";
  }

  static inline std::string dir_;
  static inline std::unique_ptr<text::Tokenizer> tok_;
  static inline std::unique_ptr<TestModel> cpu_, gpu_;
};

TEST_F(DemoModelGpu, HeldBackLogprobsAndPerplexity) {
  LogprobStats s;
  double nll_cpu = 0, nll_gpu = 0;
  int n = 0;
  for (const char* text : kHeldBack) {
    std::vector<int32_t> ids = tok_->encode(text, /*add_special_tokens=*/true);
    RunResult c = run_on(*cpu_, ids), g = run_on(*gpu_, ids, RunOptions{0, int(ids.size()) / 2});
    s.add(g.logits, c.logits);
    for (size_t t = 0; t + 1 < ids.size(); ++t, ++n) {
      nll_cpu -= log_softmax_at(c.logits[t], ids[t + 1]);
      nll_gpu -= log_softmax_at(g.logits[t], ids[t + 1]);
    }
  }
  const double ppl_cpu = std::exp(nll_cpu / n), ppl_gpu = std::exp(nll_gpu / n);
  std::printf("[ stats    ] demo held-back: %s; perplexity cpu %.3f cuda %.3f over %d tokens\n", s.str().c_str(),
              ppl_cpu, ppl_gpu, n);
  RecordProperty("perplexity_cpu", std::to_string(ppl_cpu));
  RecordProperty("perplexity_cuda", std::to_string(ppl_gpu));
  // The fixtures' W8A8 bounds (golden_gpu_test.cpp); perplexity within 3% of the oracle's.
  EXPECT_LE(s.quantile(0.5), 0.25) << s.str();
  EXPECT_LE(s.quantile(0.9), 1.0) << s.str();
  EXPECT_GE(s.agreement(), 0.88) << s.str();
  EXPECT_LT(std::abs(ppl_gpu / ppl_cpu - 1), 0.03) << "cpu " << ppl_cpu << " cuda " << ppl_gpu;
}

TEST_F(DemoModelGpu, MtpLogits) {
  ASSERT_TRUE(gpu_->model->has_mtp());
  LogprobStats s;
  for (const char* text : kHeldBack) {
    std::vector<int32_t> ids = tok_->encode(text, true);
    RunResult c = run_on(*cpu_, ids);
    s.add(run_mtp_on(*gpu_, ids, c.hidden), run_mtp_on(*cpu_, ids, c.hidden));
  }
  std::printf("[ stats    ] demo MTP from the oracle's hidden states: %s\n", s.str().c_str());
  EXPECT_LE(s.quantile(0.5), 0.25) << s.str();
  EXPECT_LE(s.quantile(0.9), 1.0) << s.str();
}

TEST_F(DemoModelGpu, GreedyGenesis) {
  std::vector<int32_t> ids = tok_->encode("In the beginning God created", true);
  std::vector<int32_t> g = greedy_on(*gpu_, ids, 8), c = greedy_on(*cpu_, ids, 8);
  const std::string text = tok_->decode(g);
  std::printf("[ greedy   ] cuda: %s\n", text.c_str());
  EXPECT_EQ(text.rfind(" the heaven and the earth.", 0), 0u) << text;
  EXPECT_EQ(g, c) << "cuda: " << text << " cpu: " << tok_->decode(c);
}

}  // namespace
}  // namespace dsserve::test
