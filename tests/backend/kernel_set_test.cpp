// The rule that picks the CUDA backend's kernel set from a GPU's compute capability (plain C++, no
// GPU): Hopper runs the sm90 set, the A100 generation the sm80 set, everything else is refused with
// a reason that names what the build holds; the sm80 set may also be forced on Hopper.
#include <gtest/gtest.h>

#include "backend/kernel_set.h"

namespace dsserve {
namespace {

TEST(KernelSet, ChosenByComputeCapability) {
  EXPECT_EQ(kernel_set_for(90), KernelSet::Sm90);  // H100, H200, H800, H20
  EXPECT_EQ(kernel_set_for(80), KernelSet::Sm80);  // A100, A800, A30
  EXPECT_EQ(kernel_set_for(87), KernelSet::Sm80);  // 163 KB of shared memory per block, as sm_80
  EXPECT_STREQ(kernel_set_name(KernelSet::Sm80), "sm80");
  EXPECT_STREQ(kernel_set_name(KernelSet::Sm90), "sm90");
}

TEST(KernelSet, OtherGenerationsAreRefusedWithTheReason) {
  for (int cc : {70, 75, 100, 120}) {
    std::string why;
    EXPECT_FALSE(kernel_set_for(cc, &why).has_value()) << cc;
    EXPECT_NE(why.find("sm_80"), std::string::npos) << why;
    EXPECT_NE(why.find("sm_90a"), std::string::npos) << why;
    EXPECT_NE(why.find(std::to_string(cc / 10) + "." + std::to_string(cc % 10)), std::string::npos) << why;
  }
  for (int cc : {86, 89}) {  // RTX 30xx / A10 / L40S: 99 KB of shared memory per block
    std::string why;
    EXPECT_FALSE(kernel_set_for(cc, &why).has_value()) << cc;
    EXPECT_NE(why.find("99 KB"), std::string::npos) << why;
  }
}

TEST(KernelSet, Sm80MayBeForcedOnHopperNotTheReverse) {
  EXPECT_TRUE(kernel_set_runs_on(KernelSet::Sm80, 90));
  EXPECT_TRUE(kernel_set_runs_on(KernelSet::Sm80, 80));
  EXPECT_FALSE(kernel_set_runs_on(KernelSet::Sm90, 80));
  EXPECT_FALSE(kernel_set_runs_on(KernelSet::Sm80, 89));
  EXPECT_FALSE(kernel_set_runs_on(KernelSet::Sm90, 100));
}

}  // namespace
}  // namespace dsserve
