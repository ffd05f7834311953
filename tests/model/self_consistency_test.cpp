// Self-consistency of the model on random models of other shapes (v_head_dim != qk_nope_head_dim,
// q_lora_rank null, two shared experts, first_k_dense_replace 0 and 2, one expert group, an odd
// vocabulary, block-FP8 with partial blocks): absorbed versus expanded attention, page sizes
// 1, 16 and 64 versus one contiguous page, chunked versus whole prefill, decode versus prefill.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>

#include "common/tiny_model_config.h"
#include "model/model_test_util.h"

namespace dsserve::test {
namespace {

struct Shape {
  std::string name;
  nlohmann::json overrides;
};

void PrintTo(const Shape& s, std::ostream* os) { *os << s.name; }

std::vector<Shape> shapes() {
  return {
      {"v3_like", nlohmann::json::object()},
      {"v_head_dim_differs", {{"v_head_dim", 48}}},
      {"no_q_lora", {{"q_lora_rank", nullptr}}},
      {"two_shared_experts", {{"n_shared_experts", 2}}},
      {"all_moe", {{"first_k_dense_replace", 0}}},
      {"two_dense", {{"first_k_dense_replace", 2}}},
      {"one_group", {{"n_group", 1}, {"topk_group", 1}}},
      {"odd_vocab", {{"vocab_size", 1001}}},
      {"fp8_partial_blocks",
       {{"quantization_config",
         {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"}, {"weight_block_size", {128, 128}}}},
        {"hidden_size", 160}, {"q_lora_rank", 200}}},
  };
}

ModelConfig make_config(const Shape& s) {
  nlohmann::json c = tiny_model_config();
  c.merge_patch(s.overrides);
  return ModelConfig::parse(c.dump(), s.name);
}

std::vector<int32_t> random_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> ids(size_t(n), 0);
  for (auto& v : ids) v = int32_t(g() % uint32_t(vocab));
  return ids;
}

// Largest |a - b| relative to the largest |b|.
double rel_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double scale = 0;
  for (auto& r : b)
    for (float v : r) scale = std::max(scale, double(std::fabs(v)));
  return max_abs_diff(a, b) / std::max(scale, 1e-30);
}

constexpr double kTolerance = 2e-5;  // float32 arithmetic in different orders

class SelfConsistency : public ::testing::TestWithParam<Shape> {};

TEST_P(SelfConsistency, AttentionFormsPagesAndChunksAgree) {
  const ModelConfig cfg = make_config(GetParam());
  const auto ids = random_ids(45, cfg.vocab_size, 7);
  TestModel contiguous = dummy_model(cfg, 11, /*page_size=*/1024, /*tokens=*/1024);
  RunResult ref = run_sequence(contiguous, ids);
  ASSERT_EQ(ref.logits.size(), ids.size());

  RunOptions absorbed;
  absorbed.prefill = AttentionMode::Absorbed;
  EXPECT_LE(rel_diff(run_sequence(contiguous, ids, absorbed).logits, ref.logits), kTolerance) << "absorbed prefill";

  for (int page_size : {1, 16, 64}) {
    TestModel paged = dummy_model(cfg, 11, page_size, 1024);
    EXPECT_LE(rel_diff(run_sequence(paged, ids).logits, ref.logits), kTolerance) << "page size " << page_size;
    RunOptions chunked{7, -1};
    EXPECT_LE(rel_diff(run_sequence(paged, ids, chunked).logits, ref.logits), kTolerance)
        << "chunks of 7, page size " << page_size;
    RunOptions decode{16, 20};  // prefill 20 tokens in chunks of 16, then decode one by one
    EXPECT_LE(rel_diff(run_sequence(paged, ids, decode).logits, ref.logits), kTolerance)
        << "decode after prefill, page size " << page_size;
    RunOptions expanded_decode{16, 20, AttentionMode::Expanded, AttentionMode::Expanded};
    EXPECT_LE(rel_diff(run_sequence(paged, ids, expanded_decode).logits, ref.logits), kTolerance)
        << "expanded decode, page size " << page_size;
  }
}

TEST_P(SelfConsistency, MtpRunsOnEveryShape) {
  const ModelConfig cfg = make_config(GetParam());
  TestModel m = dummy_model(cfg, 5, 16, 256);
  ASSERT_TRUE(m.model->has_mtp());
  const auto ids = random_ids(12, cfg.vocab_size, 3);
  RunResult r = run_sequence(m, ids);
  auto mtp = run_mtp(m, ids, r.hidden);
  ASSERT_EQ(mtp.size(), ids.size() - 1);
  for (auto& row : mtp)
    for (float v : row) ASSERT_TRUE(std::isfinite(v));
  // The MTP rows depend on their inputs: the same hidden states with another next token differ.
  auto ids2 = ids;
  ids2[5] = (ids2[5] + 1) % cfg.vocab_size;
  auto mtp2 = run_mtp(m, ids2, r.hidden);
  EXPECT_GT(max_abs_diff({mtp[4]}, {mtp2[4]}), 1e-4);
  EXPECT_LE(rel_diff({mtp[3]}, {mtp2[3]}), kTolerance) << "row 3 sees only tokens 1..4: causal";
}

INSTANTIATE_TEST_SUITE_P(Shapes, SelfConsistency, ::testing::ValuesIn(shapes()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace dsserve::test
