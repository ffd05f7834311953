// GPU models by name and the configurations SGLang lists for DeepSeek-V3/R1, planned on the full
// V3 config (configs/deepseek-v3): BF16 on 32 x A100 80GB fits and on 16 does not, the A100 40GB
// needs twice the GPUs, the reason a plan does not fit names the bytes and the budget.
#include <gtest/gtest.h>

#include "core/error.h"
#include "parallel/gpu_configs.h"

namespace dsserve {
namespace {

ModelConfig v3() { return ModelConfig::load(std::string(DSSERVE_SOURCE_DIR) + "/configs/deepseek-v3"); }
constexpr double kGiB = double(int64_t(1) << 30);

MemoryPlanInput on(const GpuModel& gpu, int tp) {
  MemoryPlanInput in;
  in.layout.tp = tp;
  in.gpu_memory_bytes = int64_t(gpu.memory_gib * kGiB);
  in.mem_fraction_static = 0.88;
  return in;
}

TEST(GpuConfigs, GpuModelsByName) {
  EXPECT_EQ(gpu_model("a100-80g").label, "A100 80GB");
  EXPECT_NEAR(gpu_model("a100-40g").memory_gib, 39.5, 0.1);
  EXPECT_NEAR(gpu_model("h100").memory_gib, gpu_model("a100-80g").memory_gib, 0.1);
  EXPECT_GT(gpu_model("h200").memory_gib, 139.0);
  try {
    gpu_model("v100");
    FAIL() << "v100 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a100-80g, a100-40g, h100, h200"), std::string::npos) << e.what();
  }
}

TEST(GpuConfigs, Bf16OnThirtyTwoA100sFitsAndOnSixteenDoesNot) {
  const GpuModel& a100 = gpu_model("a100-80g");
  const ModelConfig bf16 = with_weights(v3(), "bf16");
  const MemoryPlan p32 = plan_memory(bf16, on(a100, 32));
  EXPECT_TRUE(p32.fits);
  // About 1.37 TB of BF16 weights (MTP layer included) over 32 GPUs, plus the replicated embedding,
  // q_a / kv_a projections, router and norms.
  EXPECT_GT(p32.weight_bytes_total, 1'340'000'000'000);
  EXPECT_LT(p32.weight_bytes_total, 1'400'000'000'000);
  EXPECT_GT(double(p32.weight_bytes_per_gpu) / kGiB, 40.0);
  EXPECT_LT(double(p32.weight_bytes_per_gpu) / kGiB, 50.0);
  EXPECT_GT(p32.kv_tokens_per_gpu, 100'000);
  const MemoryPlanInput in16 = on(a100, 16);
  const MemoryPlan p16 = plan_memory(bf16, in16);
  EXPECT_FALSE(p16.fits);
  const std::string why = why_not_fit(p16, in16, a100.label);
  EXPECT_NE(why.find("GiB of weights on the fullest GPU exceed the 69.7 GiB budget per A100 80GB"), std::string::npos)
      << why;
  EXPECT_EQ(smallest_fitting_tp(bf16, in16), 32);
  EXPECT_EQ(why_not_fit(p32, on(a100, 32), a100.label), "");
}

TEST(GpuConfigs, A100FortyGigabytesNeedsSixtyFourGpusForBf16) {
  const ModelConfig bf16 = with_weights(v3(), "bf16");
  const MemoryPlanInput in = on(gpu_model("a100-40g"), 32);
  EXPECT_FALSE(plan_memory(bf16, in).fits);
  EXPECT_EQ(smallest_fitting_tp(bf16, in), 64);
}

TEST(GpuConfigs, ListedConfigurationsOfEachGpu) {
  auto listed = [](const std::string& gpu) {
    std::string s;
    for (const auto& c : sglang_configs(gpu_model(gpu))) s += c.weights + "x" + std::to_string(c.gpus) + " ";
    return s;
  };
  EXPECT_EQ(listed("a100-80g"), "bf16x32 awqx8 int8x16 ");
  EXPECT_EQ(listed("h100"), "fp8x16 bf16x32 awqx8 ");
  EXPECT_EQ(listed("h200"), "fp8x8 bf16x16 ");
  // Every row SGLang lists fits its GPUs: FP8 on 8 H200s, BF16 on 16; AWQ on 8 H100s or 8 A100s
  // (about 370 GB of 4-bit weights), INT8 on 16 A100s.
  for (const std::string gpu : {"h200", "h100", "a100-80g"})
    for (const auto& c : sglang_configs(gpu_model(gpu)))
      EXPECT_TRUE(plan_memory(with_weights(v3(), c.weights), on(gpu_model(gpu), c.gpus)).fits) << gpu << " " << c.weights;
  EXPECT_LT(plan_memory(with_weights(v3(), "awq"), on(gpu_model("h100"), 8)).weight_bytes_total, 420'000'000'000);
  EXPECT_THROW(with_weights(v3(), "fp4"), Error);
}

}  // namespace
}  // namespace dsserve
