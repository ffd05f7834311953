// The forward floors of bench-one-batch on the published DeepSeek-V3 config: a decode step of one
// token reads about the 37B activated parameters (FP8, so bytes), a one-token prefill does about
// twice that in FLOPs; the cache and expert terms are exact.
#include <gtest/gtest.h>

#include <vector>

#include "model/forward_cost.h"

namespace dsserve {
namespace {

ModelConfig v3() { return ModelConfig::load(std::string(DSSERVE_SOURCE_DIR) + "/configs/deepseek-v3"); }

TEST(ForwardCost, DecodeReadsTheActivatedParameters) {
  const ModelConfig c = v3();
  std::vector<int64_t> keys{1};
  const int moe_layers = c.num_hidden_layers - c.first_k_dense_replace;
  ForwardCost f = decode_step_cost(c, keys, int64_t(moe_layers) * c.num_experts_per_tok);
  EXPECT_GT(f.weight_bytes, 34e9);
  EXPECT_LT(f.weight_bytes, 41e9);
  EXPECT_DOUBLE_EQ(f.kv_bytes, 1.0 * c.num_hidden_layers * 576 * 2);
  // Every expert run once more costs exactly one expert's weights.
  ForwardCost g = decode_step_cost(c, keys, int64_t(moe_layers) * c.num_experts_per_tok + 10);
  EXPECT_NEAR(g.weight_bytes - f.weight_bytes, 10 * routed_expert_bytes(c), 1.0);
  EXPECT_NEAR(routed_expert_bytes(c), 3.0 * 2048 * 7168 + (32 * 56 + 56 * 16) * 4, 1.0);
}

TEST(ForwardCost, QuantizedExpertBytesFollowTheGpuLayout) {
  // AWQ (group 128): half a byte per weight and one 4-byte scale-and-zero word per group and row;
  // channel INT8: a byte per weight and a float32 scale per row; block INT8 as FP8.
  ModelConfig awq = v3(), channel = v3(), block = v3();
  awq.apply_quantization_flag("awq", "test", true);
  channel.apply_quantization_flag("w8a8_int8", "test", true);
  block.apply_quantization_flag("blockwise_int8", "test", true);
  const double I = 2048, H = 7168;
  EXPECT_NEAR(routed_expert_bytes(awq), 3 * I * H / 2 + (2 * I * (H / 128) + H * (I / 128)) * 4, 1.0);
  EXPECT_NEAR(routed_expert_bytes(channel), 3 * I * H + (2 * I + H) * 4, 1.0);
  EXPECT_NEAR(routed_expert_bytes(block), routed_expert_bytes(v3()), 1.0);
  std::vector<int64_t> keys{1};
  // W8A8 INT8 products count with the 8-bit rate, W4A16 with BF16's.
  EXPECT_GT(prefill_cost(channel, keys).fp8_flops, 0.9 * prefill_cost(channel, keys).flops());
  EXPECT_EQ(prefill_cost(awq, keys).fp8_flops, 0.0);
}

TEST(ForwardCost, UniformRoutingEstimate) {
  const ModelConfig c = v3();
  const int moe_layers = c.num_hidden_layers - c.first_k_dense_replace;
  std::vector<int64_t> one{100}, many(4096, 100);
  // One token: exactly top_k experts per layer; thousands: nearly all of them.
  EXPECT_NEAR(decode_step_cost(c, one, -1).weight_bytes,
              decode_step_cost(c, one, int64_t(moe_layers) * c.num_experts_per_tok).weight_bytes, 1e3);
  EXPECT_NEAR(decode_step_cost(c, many, -1).weight_bytes,
              decode_step_cost(c, many, int64_t(moe_layers) * c.n_routed_experts).weight_bytes,
              0.01 * routed_expert_bytes(c) * moe_layers);
  EXPECT_DOUBLE_EQ(decode_step_cost(c, many, -1).kv_bytes, 4096.0 * 100 * c.num_hidden_layers * 576 * 2);
}

// The per-layer floors of bench-one-batch --profile-layers add up to the step's, less the embedding
// rows, the final norm and the lm_head; a MoE layer of one token reads its 8 experts and the shared
// one.
TEST(ForwardCost, LayersAddUpToTheStep) {
  const ModelConfig c = v3();
  std::vector<int64_t> keys(8, 1024);
  for (CostSplit split : {CostSplit{1, false}, CostSplit{4, false}}) {
    double bytes = 0, flops = 0, kv = 0;
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const ForwardCost l = decode_layer_cost(c, i, keys, -1, 2, split);
      bytes += l.weight_bytes, flops += l.flops(), kv += l.kv_bytes;
    }
    const ForwardCost step = decode_step_cost(c, keys, -1, 2, split);
    const double head = c.hidden_size * 4.0 + 8.0 * c.hidden_size * 2 + double(c.vocab_size) * c.hidden_size * 2 / split.tp;
    EXPECT_NEAR(step.weight_bytes - bytes, head, 1e-6 * step.weight_bytes);
    EXPECT_NEAR(step.flops() - flops, 2.0 * 8 * c.vocab_size * c.hidden_size / split.tp, 1e-6 * step.flops());
    EXPECT_DOUBLE_EQ(step.kv_bytes, kv);
  }
  std::vector<int64_t> one{1};
  const ForwardCost dense = decode_layer_cost(c, 0, one, 0), moe = decode_layer_cost(c, 3, one, 8);
  EXPECT_NEAR(moe.weight_bytes - decode_layer_cost(c, 3, one, 0).weight_bytes, 8 * routed_expert_bytes(c), 1.0);
  EXPECT_GT(moe.weight_bytes, 0.55e9);  // ~0.2 GB of attention, ~0.4 GB of experts
  EXPECT_LT(moe.weight_bytes, 0.65e9);
  // DeepSeek-V3's dense MLP (18432) has the bytes of 9 experts of 2048: the layers differ by the router.
  EXPECT_NEAR(moe.weight_bytes - dense.weight_bytes, c.n_routed_experts * (c.hidden_size * 4.0 + 4), 1.0);
}

TEST(ForwardCost, PrefillFlops) {
  const ModelConfig c = v3();
  std::vector<int64_t> one{1};
  ForwardCost f = prefill_cost(c, one);
  EXPECT_GT(f.flops(), 2 * 33e9);
  EXPECT_LT(f.flops(), 2 * 40e9);
  EXPECT_GT(f.fp8_flops, 0.9 * f.flops() - 2.0 * c.vocab_size * c.hidden_size);
  // Only attention grows faster than the length: 2 n (192 + 128) L(L+1)/2 per layer (one fewer
  // last-token logits row on the left).
  std::vector<int64_t> a{1024}, b{2048};
  const double head = 2.0 * c.vocab_size * c.hidden_size;
  const double attn_extra = 2.0 * 128 * (192 + 128) * (2048.0 * 2049 / 2 - 2 * 1024.0 * 1025 / 2) * c.num_hidden_layers;
  EXPECT_NEAR(prefill_cost(c, b).flops() - 2 * prefill_cost(c, a).flops(), attn_extra - head, 1e6);
}

// One GPU of a split: bytes are replicated + split / tp, so W(1) - W(2) = 2 (W(2) - W(4)) exactly;
// the latent cache is read whole on every GPU; under expert parallelism the experts this GPU ran
// count whole, under tensor parallelism as 1/tp column slices.
TEST(ForwardCost, PerGpuUnderTensorAndExpertParallelism) {
  const ModelConfig c = v3();
  std::vector<int64_t> keys(8, 1024);
  const int64_t ran = 58 * 40;
  auto w = [&](int tp, bool ep = false) { return decode_step_cost(c, keys, ran, 2, CostSplit{tp, ep}).weight_bytes; };
  EXPECT_NEAR(w(1) - w(2), 2 * (w(2) - w(4)), 1.0);
  const double replicated = 2 * w(2) - w(1);  // R = 2 W(2) - W(1)
  EXPECT_GT(replicated, 58 * (2112.0 * 7168));  // q_a + kv_a of every layer at least
  EXPECT_LT(replicated, 0.05 * w(1));
  EXPECT_DOUBLE_EQ(decode_step_cost(c, keys, ran, 2, CostSplit{8, false}).kv_bytes,
                   decode_step_cost(c, keys, ran, 2).kv_bytes);
  // Expert parallel: the experts this GPU ran are whole experts; tensor parallel: slices.
  EXPECT_NEAR(w(8, true) - w(8, false), ran * routed_expert_bytes(c) * (1.0 - 1.0 / 8), 1.0);
  // Prefill FLOPs split the same way: only q_a + kv_a and the router stay whole.
  std::vector<int64_t> lens{4096};
  const double p1 = prefill_cost(c, lens).flops(), p2 = prefill_cost(c, lens, CostSplit{2, false}).flops(),
               p4 = prefill_cost(c, lens, CostSplit{4, false}).flops();
  EXPECT_NEAR(p1 - p2, 2 * (p2 - p4), 1e-6 * p1);
  EXPECT_LT(p4, 0.3 * p1);
}

}  // namespace
}  // namespace dsserve
