// Properties of the current CUDA device that kernel choice and launch sizing read (multiprocessor
// count, compute capability), queried once per device and cached: cheap enough for every launch.
#pragma once

namespace dsserve::cuda {

// Streaming multiprocessors of the current device (132 when it cannot be read).
int current_sm_count();
// Compute capability of the current device as 10 * major + minor (90 for Hopper, 80 for A100);
// 0 when it cannot be read.
int current_compute_capability();
// Whether the current device runs the Hopper (sm_90a) kernels: wgmma, TMA, setmaxnreg.
inline bool current_device_is_hopper() { return current_compute_capability() / 10 == 9; }

}  // namespace dsserve::cuda
