#!/usr/bin/env python3
"""Writes wgmma.cuh: the BF16 wgmma.mma_async wrappers (m64nNk16, float32 accumulators) for the N the
kernels use, with A from shared memory (ss) or registers (rs). Run it after changing NS."""
import os

NS = [64, 128, 256]

def ss(n):
    nacc = n // 2
    regs = ", ".join(f"%{i}" for i in range(nacc))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(nacc))
    return f'''
// D[64 x {n}] (+)= A[64 x 16] B[16 x {n}]; A and B from shared memory (descriptors).
template <int kTransA, int kTransB>
__device__ __forceinline__ void wgmma_m64n{n}k16_ss(float (&d)[{nacc}], uint64_t desc_a, uint64_t desc_b, int accumulate) {{
  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{nacc + 2}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16 {{{regs}}}, %{nacc}, %{nacc + 1}, p, 1, 1, %{nacc + 3}, %{nacc + 4};\\n}}\\n"
      : {outs}
      : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransA), "n"(kTransB));
}}
'''

def rs(n):
    nacc = n // 2
    regs = ", ".join(f"%{i}" for i in range(nacc))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(nacc))
    a = ", ".join(f"%{nacc + i}" for i in range(4))
    return f'''
// D[64 x {n}] (+)= A[64 x 16] B[16 x {n}]; A from registers (the m16n8k16 A fragment of each warp's 16
// rows, bf16x2 words a0..a3), B from shared memory.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n{n}k16_rs(float (&d)[{nacc}], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {{
  asm volatile(
      "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{nacc + 5}, 0;\\n"
      "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16 {{{regs}}}, {{{a}}}, %{nacc + 4}, p, 1, 1, %{nacc + 6};\\n}}\\n"
      : {outs}
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB));
}}
'''

head = '''// BF16 wgmma.mma_async wrappers (sm_90a), written by gen_wgmma.py: D[64 x N] in float32 registers
// (per warp of the warpgroup 16 rows; for n8 block j a lane holds (g, 8j + 2t), (g, 8j + 2t + 1),
// (g + 8, 8j + 2t), (g + 8, 8j + 2t + 1) at d[4j .. 4j + 3], g = lane / 4, t = lane % 4). `accumulate`
// 0 writes D = A B, 1 adds. The fences and waits are in wgmma_sync.cuh.
#pragma once
#include <cstdint>

namespace dsserve::cuda::sm90 {
'''
body = "".join(ss(n) + rs(n) for n in NS)
out = head + body + "\n}  // namespace dsserve::cuda::sm90\n"
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wgmma.cuh")
open(path, "w").write(out)
