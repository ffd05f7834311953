#!/usr/bin/env bash
# Kernel-level profile on the device machine with Nsight Compute (ncu), from the gpu-check bundle
# (scripts/gpu-check.sh --bundle build here, then this there with one .gpu-carry* bundle carried):
#  1. the MoE decode grouped kernel (bench_moe_decode) at T = 1 and 64: speed of light, occupancy,
#     warp stall reasons, memory workload;
#  2. every kernel of bench-one-batch's decode steps (DeepSeek-V3 width, 4 layers, dummy FP8,
#     eager) at batch 1 and 64: duration per launch, in order, as CSV for later grouping.
#  3. (stage attention) the MLA decode kernel at B=64 h16 and the prefill attention kernel.
#  4. (stage w8a8) the W8A8 decode kernels: the dense linear (GpuBench.Fp8DecodeLinear, T = 1 on
#     gate_up 36864 x 7168) and the grouped MoE products (bench_moe_decode at T = 1 and 64).
#  5. (stage hopper) the Hopper kernels that miss their targets, one launch each with every section
#     and its details (stall reasons, pipe utilisation, shared-memory traffic): the wgmma MLA decode
#     (B=64, 128 heads, context 4096), the wgmma prefill attention (4096 tokens, causal, 128 heads)
#     and the sm90 FP8 GEMM on o_proj (7168 x 16384 at 4096 tokens).
# Results in $OUT: moe_T*.txt, decode_b*.csv, mla_*.txt, w8a8_*.txt, hopper_*.txt.
# Stages: DSSERVE_PROFILE=moe,decode,attention,w8a8,hopper.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-/tmp/dsserve-profile-out}
mkdir -p "$OUTDIR"
R=/tmp/dsserve-gpu
rm -rf $R && mkdir -p $R && tar -C $R -xJf "$(ls "$ROOT"/.gpu-carry*/bundle.tar.xz | head -1)"
export LD_LIBRARY_PATH=$R/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[[ -x "$NCU" ]] || { echo "gpu-profile: no ncu"; exit 2; }
echo "ncu: $NCU"
STAGES=${DSSERVE_PROFILE:-moe,decode}
has() { [[ ",$STAGES," == *",$1,"* ]]; }
if has moe; then
  for T in 1 64; do
    timeout 240 "$NCU" --clock-control none -k regex:"moe_grouped|moe_w8a8" --launch-skip 6 --launch-count 2 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis \
      $R/bin/bench_moe_decode 4 $T > "$OUTDIR/moe_T$T.txt" 2>&1
    echo "== moe grouped T=$T (exit $?)"
    grep -E "moe_grouped_gemm_kernel|moe_w8a8_kernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|No Eligible|Registers Per|Block Limit|Stall|Theoretical Occ" "$OUTDIR/moe_T$T.txt" | head -40
  done
fi
if has decode; then
  V3=$ROOT/configs/deepseek-v3
  for b in 1 64; do
    timeout 300 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
      $R/bin/dsserve bench-one-batch --model-path $V3 --load-format dummy --device cuda \
      --json-model-override-args '{"num_hidden_layers": 4}' --batch-size $b --input-len 1024 --output-len 3 \
      --disable-cuda-graph > "$OUTDIR/decode_b$b.csv" 2>&1
    echo "== decode kernels batch $b (exit $?): $(grep -c gpu__time_duration "$OUTDIR/decode_b$b.csv") launches"
  done
fi
if has attention; then
  S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis"
  export DSSERVE_FIXTURES=$R/fixtures
  timeout 200 "$NCU" --clock-control none -k regex:"mla_decode_mma|mla_combine" --launch-count 2 $S \
    $R/bin/test_gpu --gtest_filter=GpuBench.MlaDecode > "$OUTDIR/mla_decode.txt" 2>&1
  echo "== mla decode B=64 h16 (exit $?)"
  timeout 200 "$NCU" --clock-control none -k regex:mla_expanded_mma --launch-count 1 $S \
    $R/bin/test_gpu --gtest_filter=GpuBench.MlaAttention > "$OUTDIR/mla_prefill.txt" 2>&1
  echo "== mla prefill T=4096 h128 (exit $?)"
  for f in mla_decode mla_prefill; do
    grep -E "_kernel|Duration|DRAM Throughput|L2 Cache Throughput|L1/TEX Cache|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Issue Slots|Executed Ipc|L2 Hit|L1/TEX Hit|Tensor|No Eligible|Theoretical Occ" "$OUTDIR/$f.txt" | head -40
  done
fi
if has w8a8; then
  S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
  export DSSERVE_FIXTURES=$R/fixtures
  # The gate_up shape alone at T = 1 (past the warm-up launches of graph recording).
  DSSERVE_BENCH_SHAPES=gate_up DSSERVE_BENCH_TOKENS=1 timeout 240 "$NCU" --clock-control none \
    -k regex:w8a8_decode_kernel --launch-skip 24 --launch-count 2 $S \
    $R/bin/test_gpu --gtest_filter=GpuBench.Fp8DecodeLinear > "$OUTDIR/w8a8_linear.txt" 2>&1
  echo "== w8a8 decode linear (exit $?)"
  for T in 1 64; do
    timeout 240 "$NCU" --clock-control none -k regex:"moe_w8a8|moe_router_fused|moe_combine" --launch-skip 6 --launch-count 4 $S \
      $R/bin/bench_moe_decode 4 $T > "$OUTDIR/w8a8_moe_T$T.txt" 2>&1
    echo "== w8a8 moe T=$T (exit $?)"
  done
  for f in w8a8_linear w8a8_moe_T1 w8a8_moe_T64; do
    grep -E "_kernel|Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Issue Slots|No Eligible|Theoretical Occ|Grid Size|Block Limit" "$OUTDIR/$f.txt" | head -48
  done
fi
if has hopper; then
  export DSSERVE_FIXTURES=$R/fixtures
  F="--set full --print-details all"
  timeout 200 "$NCU" --clock-control none -k regex:mla_decode_sm90 --launch-skip 3 --launch-count 1 $F \
    $R/bin/test_gpu --gtest_filter=GpuBench.MlaDecode > "$OUTDIR/hopper_mla_decode.txt" 2>&1
  echo "== wgmma MLA decode B=64 h128 (exit $?)"
  timeout 200 "$NCU" --clock-control none -k regex:mla_prefill_sm90 --launch-skip 1 --launch-count 1 $F \
    $R/bin/test_gpu --gtest_filter=GpuBench.MlaAttention > "$OUTDIR/hopper_mla_prefill.txt" 2>&1
  echo "== wgmma MLA prefill T=4096 h128 (exit $?)"
  if [[ -x $R/bin/bench_fp8_prefill ]]; then
    timeout 200 "$NCU" --clock-control none -k regex:fp8_gemm_sm90 --launch-skip 3 --launch-count 1 $F \
      $R/bin/bench_fp8_prefill one 4096 7168 16384 C128x128 > "$OUTDIR/hopper_gemm_oproj.txt" 2>&1
    echo "== sm90 FP8 GEMM o_proj 4096 x 7168 x 16384 (exit $?)"
  fi
  for f in hopper_mla_decode hopper_mla_prefill hopper_gemm_oproj; do
    [[ -f "$OUTDIR/$f.txt" ]] || continue
    echo "-- $f"
    grep -E "_kernel|Duration|DRAM Throughput|Compute \(SM\) Throughput|Issue Slots Busy|Executed Ipc A|Warp Cycles Per Issued|Stall|stall|Tensor|Shared|Bank|Achieved Occupancy|Registers Per|No Eligible" \
      "$OUTDIR/$f.txt" | cut -c1-160 | head -60
  done
fi
