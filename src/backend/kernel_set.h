// The CUDA backend's two kernel sets and the one rule that picks a set from a GPU's compute
// capability. sm90 (Hopper, 9.0): wgmma / TMA kernels, cuBLASLt's block-scaled FP8 products,
// thread-block clusters and programmatic dependent launch. sm80 (Ampere, 8.0): mma.sync / cp.async
// kernels, FP8 weights as W8A16 (kept FP8 in memory, widened to BF16 where they are used), no
// clusters. Plain C++ (no CUDA): the rule is tested on the CPU.
#pragma once
#include <optional>
#include <string>

namespace dsserve {

enum class KernelSet { Sm80, Sm90 };

const char* kernel_set_name(KernelSet s);  // "sm80", "sm90"
// One line for the start-up log: what the set runs.
const char* kernel_set_summary(KernelSet s);

// The set a GPU of compute capability cc (10 * major + minor) runs: sm90 on 9.0, sm80 on 8.0 and
// 8.7 (163 KB of shared memory per block, as the sm_80 kernels need); none for any other (8.6 and
// 8.9 have 99 KB; this build holds code for sm_80 and sm_90a only), with the reason in *why.
std::optional<KernelSet> kernel_set_for(int cc, std::string* why = nullptr);

// Whether set s can run on a GPU of compute capability cc: sm80 where it is chosen and on 9.0
// (forced on Hopper for tests and benchmarks), sm90 on 9.0 only.
bool kernel_set_runs_on(KernelSet s, int cc);

}  // namespace dsserve
