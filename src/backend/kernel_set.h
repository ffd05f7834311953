// The CUDA backend's two kernel sets and the one rule that picks a set from a GPU's compute
// capability. sm90 (Hopper, 9.0): wgmma / TMA kernels, cuBLASLt's block-scaled FP8 products,
// thread-block clusters and programmatic dependent launch. sm80 (Ampere, 8.0): mma.sync / cp.async
// kernels, FP8 weights as W8A16 (kept FP8 in memory, widened to BF16 where they are used), no
// clusters. Plain C++ in one header (no CUDA; the CUDA backend and the CPU tests both use it).
#pragma once
#include <fmt/format.h>

#include <optional>
#include <string>

namespace dsserve {

enum class KernelSet { Sm80, Sm90 };

// "sm80", "sm90"
inline const char* kernel_set_name(KernelSet s) { return s == KernelSet::Sm90 ? "sm90" : "sm80"; }
// One line for the start-up log: what the set runs.
inline const char* kernel_set_summary(KernelSet s) {
  return s == KernelSet::Sm90
             ? "sm90 (Hopper): wgmma/TMA attention, cuBLASLt block-FP8 products (W8A8), clusters"
             : "sm80 (Ampere): mma.sync/cp.async attention, FP8 weights as W8A16 (widened to BF16 in registers up "
               "to 64 tokens, chunk by chunk before BF16 cuBLASLt products beyond), no clusters";
}

// The set a GPU of compute capability cc (10 * major + minor) runs: sm90 on 9.0, sm80 on 8.0 and
// 8.7 (163 KB of shared memory per block, as the sm_80 kernels need); none for any other (8.6 and
// 8.9 have 99 KB; this build holds code for sm_80 and sm_90a only), with the reason in *why.
inline std::optional<KernelSet> kernel_set_for(int cc, std::string* why = nullptr) {
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

// Whether set s can run on a GPU of compute capability cc: sm80 where it is chosen and on 9.0
// (forced on Hopper for tests and benchmarks), sm90 on 9.0 only.
inline bool kernel_set_runs_on(KernelSet s, int cc) {
  return s == KernelSet::Sm90 ? cc == 90 : (cc == 80 || cc == 87 || cc == 90);
}

}  // namespace dsserve
