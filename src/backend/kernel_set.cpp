// Kernel sets by compute capability (see kernel_set.h).
#include "backend/kernel_set.h"

#include <fmt/format.h>

namespace dsserve {

const char* kernel_set_name(KernelSet s) { return s == KernelSet::Sm90 ? "sm90" : "sm80"; }

const char* kernel_set_summary(KernelSet s) {
  return s == KernelSet::Sm90
             ? "sm90 (Hopper): wgmma/TMA attention, cuBLASLt block-FP8 products (W8A8), clusters"
             : "sm80 (Ampere): mma.sync/cp.async attention, FP8 weights as W8A16 (widened to BF16 in registers, "
               "or tile-wise before a BF16 cuBLASLt product at prefill sizes), BF16 cuBLASLt";
}

std::optional<KernelSet> kernel_set_for(int cc, std::string* why) {
  if (cc == 90) return KernelSet::Sm90;
  if (cc == 80 || cc == 87) return KernelSet::Sm80;
  if (why) {
    if (cc == 86 || cc == 89)
      *why = fmt::format("compute capability {}.{}: 99 KB of shared memory per block, and the sm_80 kernels take up "
                         "to 163 KB (A100, A800, A30: 8.0)",
                         cc / 10, cc % 10);
    else
      *why = fmt::format("compute capability {}.{}: this build has kernels for sm_80 (A100, A800, A30: 8.0) and "
                         "sm_90a (H100, H200, H800, H20: 9.0) only",
                         cc / 10, cc % 10);
  }
  return std::nullopt;
}

bool kernel_set_runs_on(KernelSet s, int cc) {
  return s == KernelSet::Sm90 ? cc == 90 : (cc == 80 || cc == 87 || cc == 90);
}

}  // namespace dsserve
