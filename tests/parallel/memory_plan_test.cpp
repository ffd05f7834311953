// Memory plans of the full DeepSeek-V3 config (configs/deepseek-v3): the checkpoint's byte count,
// how layouts split it, KV capacity, and refused layouts.
#include <gtest/gtest.h>

#include "core/error.h"
#include "parallel/memory_plan.h"

namespace dsserve {
namespace {

ModelConfig v3() { return ModelConfig::load(std::string(DSSERVE_SOURCE_DIR) + "/configs/deepseek-v3"); }

MemoryPlanInput h200(ParallelLayout l) {
  MemoryPlanInput in;
  in.layout = l;
  in.gpu_memory_bytes = int64_t(139.4 * double(int64_t(1) << 30));
  in.mem_fraction_static = 0.88;
  return in;
}

TEST(MemoryPlan, FullDeepSeekV3InFp8IsAbout685GB) {
  MemoryPlan p = plan_memory(v3(), h200({}));
  // 671B parameters plus the 14B MTP layer, mostly FP8 (one byte) with BF16 embedding, head and norms.
  EXPECT_GT(p.weight_bytes_total, 680'000'000'000);
  EXPECT_LT(p.weight_bytes_total, 690'000'000'000);
  EXPECT_FALSE(p.fits) << "one GPU cannot hold it";
  EXPECT_EQ(p.kv_bytes_per_token, 62 * 576 * 2) << "61 layers + MTP, 576 bf16 values each";
}

// The loader keeps the embedding whole on every GPU and splits the lm_head by vocabulary: 1,024
// more vocabulary rows cost each of 8 GPUs a whole embedding slice and an eighth of a head slice.
TEST(MemoryPlan, EmbeddingIsReplicatedAndLmHeadSplit) {
  ParallelLayout tp8;
  tp8.tp = 8;
  ModelConfig wider = v3();
  wider.vocab_size += 1024;
  const int64_t rows_bytes = int64_t(1024) * v3().hidden_size * 2;  // BF16
  const int64_t grew = plan_memory(wider, h200(tp8)).weight_bytes_per_gpu - plan_memory(v3(), h200(tp8)).weight_bytes_per_gpu;
  EXPECT_EQ(grew, rows_bytes + rows_bytes / 8);
}

// SGLang's AWQ row: DeepSeek-V3 in AWQ 4-bit weights on 8 x H100 (80 GB, 79.2 GiB as the driver
// reports it) with tensor parallelism; the FP8 and INT8 forms do not fit there (INT8 takes 16 GPUs).
TEST(MemoryPlan, AwqFitsEightH100sWhereFp8AndInt8DoNot) {
  MemoryPlanInput in;
  in.layout.tp = 8;
  in.gpu_memory_bytes = int64_t(79.2 * double(int64_t(1) << 30));
  ModelConfig awq = v3(), int8 = v3();
  awq.apply_quantization_flag("awq", "test", /*generated=*/true);
  int8.apply_quantization_flag("w8a8_int8", "test", /*generated=*/true);
  const MemoryPlan a = plan_memory(awq, in), f = plan_memory(v3(), in), i = plan_memory(int8, in);
  EXPECT_TRUE(a.fits);
  EXPECT_FALSE(f.fits);
  EXPECT_FALSE(i.fits);
  // 4 bits per routed-expert weight plus an F16 scale and a 4-bit zero per 128: a bit over half of FP8.
  EXPECT_GT(double(a.weight_bytes_total), 0.5 * double(f.weight_bytes_total));
  EXPECT_LT(double(a.weight_bytes_total), 0.55 * double(f.weight_bytes_total));
  EXPECT_GT(a.kv_tokens_per_gpu, 300'000);  // 387,857 at --mem-fraction-static 0.88
  in.layout.tp = 16;
  EXPECT_TRUE(plan_memory(int8, in).fits) << "INT8 on 16 GPUs, as SGLang's int8 row (16 x A100)";
}

TEST(MemoryPlan, Tp8FitsOneNodeAndDpAttentionMultipliesDistinctTokens) {
  ParallelLayout tp8;
  tp8.tp = 8;
  MemoryPlan a = plan_memory(v3(), h200(tp8));
  EXPECT_TRUE(a.fits);
  EXPECT_GT(a.weight_bytes_per_gpu, a.weight_bytes_total / 8) << "replicated parts";
  EXPECT_LT(a.weight_bytes_per_gpu, a.weight_bytes_total / 8 + 8'000'000'000);
  EXPECT_EQ(a.kv_tokens_total, a.kv_tokens_per_gpu) << "TP replicates the latent cache";

  ParallelLayout dp8 = tp8;
  dp8.dp = 8, dp8.dp_attention = true, dp8.ep = 8;
  MemoryPlan b = plan_memory(v3(), h200(dp8));
  EXPECT_TRUE(b.fits);
  EXPECT_GT(b.weight_bytes_per_gpu, a.weight_bytes_per_gpu) << "attention weights replicated per group";
  EXPECT_EQ(b.kv_tokens_total, 8 * b.kv_tokens_per_gpu);

  MemoryPlanInput fp8 = h200(tp8);
  fp8.kv_bytes_per_value = 1;
  EXPECT_NEAR(double(plan_memory(v3(), fp8).kv_tokens_per_gpu), 2.0 * double(a.kv_tokens_per_gpu), 2.0);
}

TEST(MemoryPlan, InvalidLayoutsAreRefused) {
  ParallelLayout l;
  l.tp = 8, l.dp = 3, l.dp_attention = true;
  EXPECT_THROW(plan_memory(v3(), h200(l)), Error);
  l = {};
  l.tp = 8, l.ep = 3;
  EXPECT_THROW(plan_memory(v3(), h200(l)), Error);
  l = {};
  l.tp = 3;
  EXPECT_THROW(plan_memory(v3(), h200(l)), Error) << "128 heads over 3 GPUs";
  l = {};
  l.dp = 2;
  EXPECT_THROW(plan_memory(v3(), h200(l)), Error) << "--dp-size without --enable-dp-attention";
}

}  // namespace
}  // namespace dsserve
