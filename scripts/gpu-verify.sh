#!/usr/bin/env bash
# The device calls that verify an integration of kernel work (carry a bundle of
# `scripts/gpu-check.sh --bundle build`, as .gpu-carry*/bundle.tar.xz; a call carries at most 64 MiB
# with the tree, so a bundle may hold only the fixtures its part needs). Part "check" runs the
# correctness tests of the Hopper kernels (attention variants, FP8 GEMMs, the fused decode path and
# the unfused default), the sm80 kernel set forced on Hopper and the demo model against
# the CPU oracle (fixtures tiny-v3-bf16, tiny-v3-fp8); part "quant" the quantized kernels and the
# quantized fixtures present, their benchmarks and the sm80 set's; part "bench" the decision
# benchmarks of attention, FP8 GEMMs and decode, each beside the ceilings measured in the same run.
# Logs go to $OUT, short summaries to stdout.
# Part "short": the correctness of the latest changes and the GEMM benchmark, under five minutes.
# Part "final": attention, quantized kernels and fixtures, GEMM and sm80 benchmarks in one call.
# Part "attn": the attention kernels and the fused decode path, tests then benchmarks.
# Part "core" is the short form of what decides the defaults (decode path, attention variants).
# Usage (from the repository root on the device machine): scripts/gpu-verify.sh core|check|quant|bench
set -u
PART=${1:?core, attn, check, quant or bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-/tmp/dsserve-gpu-out}; mkdir -p "$OUTDIR"
R=/tmp/dsserve-gpu
BUNDLE=$(ls "$ROOT"/.gpu-carry*/bundle.tar.xz | head -1)
rm -rf $R; mkdir -p $R; tar -C $R -xJf "$BUNDLE"
export LD_LIBRARY_PATH=$R/lib DSSERVE_FIXTURES=$R/fixtures
B=$R/bin V3=$ROOT/configs/deepseek-v3
T=$B/test_gpu
sum() { grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|Failure|Which is|Expected|^\[ stats|^\[ greedy|rror" | cut -c1-220 | head -${1:-40}; }
step() { echo "== $1 ($(date +%T))"; }
if [[ $PART == core ]]; then
  # What decides the defaults, in one call (bundle: test_gpu, dsserve, tiny-v3-fp8): the fused decode
  # path and the attention variants against the oracle, then their benchmarks.
  nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
  step "fused decode path and the unfused kernels (the default), FP8 golden fixture"
  timeout 150 $T --gtest_filter='W8A8Decode*:MlaFusion*:GpuSampling.GreedyRowsOverManyBlocks:Fixtures/GpuGolden.*/fp8*:GpuOps.LinearFp8*:MoeW8A8.*' > $OUTDIR/decode.log 2>&1; sum 30 < $OUTDIR/decode.log
  step "decode step: fused decode path vs the unfused default, 4 V3 layers (3 dense + 1 MoE), dummy FP8, graphs, context 1024"
  timeout 150 $B/dsserve bench-one-batch --model-path $V3 --load-format dummy --device cuda --json-model-override-args '{"num_hidden_layers":4}' \
    --output-len 8 --profile-layers --fused-decode --decode-baseline --batch-size 1 8 64 256 --input-len 1024 > $OUTDIR/decode_bench.log 2>&1
  grep -E '^\||ceilings|baseline|against|per decoder|rror' $OUTDIR/decode_bench.log | cut -c1-200 | tail -60
  step "MLA decode and prefill: every variant beside the shipped one and the ceilings"
  timeout 80 $T --gtest_filter='GpuBench.MlaDecode:GpuBench.MlaAttention' > $OUTDIR/attn_bench.log 2>&1
  grep -E "bench|ceiling|mla |FAILED" $OUTDIR/attn_bench.log | cut -c1-200 | head -60
  step "attention variants against the oracle"
  timeout 140 $T --gtest_filter='GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:GpuOps.MlaExpandedCausalWithPrefixes' > $OUTDIR/attn.log 2>&1; sum 30 < $OUTDIR/attn.log
elif [[ $PART == attn ]]; then
  # The attention kernels (each variant against the oracle, then timed beside the ceilings), the fused
  # decode path's own tests and its step time beside the unfused default (bundle: test_gpu, dsserve,
  # tiny-v3-fp8).
  nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
  step "MLA prefill kernels with cached prefixes (each named before it runs)"
  timeout 60 $T --gtest_filter='GpuOps.MlaExpandedCausalWithPrefixes' > $OUTDIR/prefill.log 2>&1; echo "rc $?"
  grep -E '^\[ kernel|FAILED|PASSED|Failure|Which|err' $OUTDIR/prefill.log | cut -c1-200 | tail -16
  step "MLA decode kernels against the oracle"
  timeout 100 $T --gtest_filter='GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:*GpuFp8Cache*Mla*' > $OUTDIR/attn.log 2>&1; echo "rc $?"; sum 30 < $OUTDIR/attn.log
  step "MLA decode: every variant beside the shipped one and the ceilings"
  timeout 60 $T --gtest_filter='GpuBench.MlaDecode' > $OUTDIR/decode_attn_bench.log 2>&1; echo "rc $?"
  grep -E "bench|ceiling|mla |FAILED" $OUTDIR/decode_attn_bench.log | cut -c1-200 | head -40
  step "MLA prefill: every grid beside the ceilings"
  timeout 90 $T --gtest_filter='GpuBench.MlaAttention' > $OUTDIR/prefill_bench.log 2>&1; echo "rc $?"
  grep -E "bench|ceiling|mla |FAILED" $OUTDIR/prefill_bench.log | cut -c1-200 | head -30
  step "fused decode path: its MLP, MoE and the FP8 golden fixture"
  timeout 60 $T --gtest_filter='W8A8Decode.FusedMlpMatchesOracle:MoeW8A8.*:Fixtures/GpuGolden.*/fp8_fused_decode' > $OUTDIR/fused.log 2>&1; echo "rc $?"; sum 30 < $OUTDIR/fused.log
  step "decode step: fused decode path vs the unfused default, 4 V3 layers (3 dense + 1 MoE), dummy FP8, graphs, context 1024"
  timeout 100 $B/dsserve bench-one-batch --model-path $V3 --load-format dummy --device cuda --json-model-override-args '{"num_hidden_layers":4}' \
    --output-len 8 --profile-layers --fused-decode --decode-baseline --batch-size 1 --input-len 1024 > $OUTDIR/decode_bench.log 2>&1; echo "rc $?"
  grep -E '^\||ceilings|baseline|against|per decoder|rror' $OUTDIR/decode_bench.log | cut -c1-200 | tail -40
elif [[ $PART == short ]]; then
  # The correctness of what changed since the last run, in under five minutes (bundle as for final):
  # the prefill kernel with cached prefixes, the decode kernel, the quantized kernels and fixtures,
  # then the FP8 GEMM benchmark while the call has time.
  nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
  step "MLA prefill kernels with cached prefixes (each named before it runs)"
  timeout 45 $T --gtest_filter='GpuOps.MlaExpandedCausalWithPrefixes:GpuOps.MlaExpandedMmaLongAndStrided' > $OUTDIR/prefill.log 2>&1; echo "rc $?"
  grep -E '^\[ kernel|FAILED|PASSED|Failure|Which|err' $OUTDIR/prefill.log | cut -c1-200 | tail -16
  step "MLA decode kernels against the oracle"
  timeout 100 $T --gtest_filter='GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:*GpuFp8Cache*Mla*' > $OUTDIR/attn.log 2>&1; echo "rc $?"; sum 30 < $OUTDIR/attn.log
  g=$(ls $R/fixtures | grep -E 'awq|int8' | sed -e 's/tiny-v3-//' -e 's/-/_/g' -e 's|^|Fixtures/GpuGolden.*/|' | tr '\n' ':')
  step "quantized kernels against the oracle and the quantized fixtures"
  timeout 100 $T --gtest_filter="GpuQuant.*:GpuQuantGraphs.*:GpuQuantDefaults.*:$g" > $OUTDIR/quant.log 2>&1; echo "rc $?"; sum 40 < $OUTDIR/quant.log
  if (( SECONDS > 230 )); then echo "== stopped at $SECONDS s"; exit 0; fi
  step "FP8 GEMM: dense V3 shapes at 4096 tokens"
  timeout 35 $B/bench_fp8_prefill dense 4096 > $OUTDIR/gemm_dense.log 2>&1; tail -11 $OUTDIR/gemm_dense.log
elif [[ $PART == final ]]; then
  # One call after the choices (bundle: test_gpu, bench_fp8_prefill, tiny-v3-awq, tiny-v3-int8-block):
  # the attention kernels against the oracle and timed, the quantized kernels and fixtures, the FP8
  # GEMM and the sm80 set's benchmarks, each step bounded so that the whole fits one call.
  nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
  step "MLA prefill kernels with cached prefixes (each named before it runs)"
  timeout 45 $T --gtest_filter='GpuOps.MlaExpandedCausalWithPrefixes:GpuOps.MlaExpandedMmaLongAndStrided' > $OUTDIR/prefill.log 2>&1; echo "rc $?"
  grep -E '^\[ kernel|FAILED|PASSED|Failure|Which|err' $OUTDIR/prefill.log | cut -c1-200 | tail -16
  step "MLA decode kernels against the oracle"
  timeout 100 $T --gtest_filter='GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:*GpuFp8Cache*Mla*' > $OUTDIR/attn.log 2>&1; echo "rc $?"; sum 30 < $OUTDIR/attn.log
  step "MLA decode and prefill beside the ceilings"
  timeout 60 $T --gtest_filter='GpuBench.MlaDecode:GpuBench.MlaAttention' > $OUTDIR/attn_bench.log 2>&1; echo "rc $?"
  grep -E "bench|ceiling|mla |FAILED" $OUTDIR/attn_bench.log | cut -c1-200 | head -40
  g=$(ls $R/fixtures | grep -E 'awq|int8' | sed -e 's/tiny-v3-//' -e 's/-/_/g' -e 's|^|Fixtures/GpuGolden.*/|' | tr '\n' ':')
  step "quantized kernels against the oracle and the quantized fixtures"
  timeout 110 $T --gtest_filter="GpuQuant.*:GpuQuantGraphs.*:GpuQuantDefaults.*:$g" > $OUTDIR/quant.log 2>&1; echo "rc $?"; sum 40 < $OUTDIR/quant.log
  step "FP8 GEMM: dense V3 shapes at 4096 tokens, grouped experts"
  timeout 40 $B/bench_fp8_prefill dense 4096 > $OUTDIR/gemm_dense.log 2>&1; tail -11 $OUTDIR/gemm_dense.log
  timeout 40 $B/bench_fp8_prefill grouped > $OUTDIR/gemm_grouped.log 2>&1; tail -18 $OUTDIR/gemm_grouped.log
  # What is left runs while the call has time (the steps above are bounded at 395 s).
  if (( SECONDS > 330 )); then echo "== stopped at $SECONDS s"; exit 0; fi
  if [[ -x $B/dsserve ]]; then
    step "decode step: fused decode path vs the unfused default at batch 8 and 64, 4 V3 layers, dummy FP8, graphs, context 1024"
    timeout 80 $B/dsserve bench-one-batch --model-path $V3 --load-format dummy --device cuda --json-model-override-args '{"num_hidden_layers":4}' \
      --output-len 8 --fused-decode --decode-baseline --batch-size 8 64 --input-len 1024 > $OUTDIR/decode_bench.log 2>&1; echo "rc $?"
    grep -A6 'fused decode kernels against' $OUTDIR/decode_bench.log | cut -c1-200
  fi
  if (( SECONDS > 420 )); then echo "== stopped at $SECONDS s"; exit 0; fi
  step "quantized kernels: decode sizes, prefill, MoE"
  timeout 60 $T --gtest_filter='GpuQuantBench.*' > $OUTDIR/quant_bench.log 2>&1; grep -E '^\[ bench|Failure|rror' $OUTDIR/quant_bench.log | cut -c1-200 | head -40
  if (( SECONDS > 470 )); then echo "== stopped at $SECONDS s"; exit 0; fi
  step "sm80 kernel set beside the sm90 one"
  timeout 40 $T --gtest_filter='Sm80Bench.*' > $OUTDIR/sm80_bench.log 2>&1; grep -E '^\[ bench|FAILED|Failure' $OUTDIR/sm80_bench.log | cut -c1-200 | head -30
elif [[ $PART == check ]]; then
  nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
  step "fused decode path and the unfused kernels (the default), golden fixtures bf16 and fp8"
  timeout 170 $T --gtest_filter='W8A8Decode*:MlaFusion*:GpuSampling.*:Fixtures/GpuGolden.*/bf16:Fixtures/GpuGolden.*/fp8*:GpuOps.MoeRoute*:GpuOps.LinearFp8*:MoeW8A8.*:Fp8DecodeLinear.*' > $OUTDIR/decode.log 2>&1; sum 40 < $OUTDIR/decode.log
  step "attention variants"
  timeout 120 $T --gtest_filter='GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:GpuOps.MlaExpandedCausalWithPrefixes:*GpuFp8Cache*Mla*' > $OUTDIR/attn.log 2>&1; sum 30 < $OUTDIR/attn.log
  step "sm90 FP8 GEMM"
  timeout 70 $T --gtest_filter='Fp8GemmSm90.*:Fp8Prefill.*' > $OUTDIR/gemm.log 2>&1; sum 30 < $OUTDIR/gemm.log
  step "demo model"
  (cd "$ROOT" && timeout 40 $T --gtest_filter='DemoModelGpu.*') > $OUTDIR/demo.log 2>&1; sum 20 < $OUTDIR/demo.log
  step "sm80 kernel set"
  timeout 40 $T --gtest_filter='Sm80Kernels.*' > $OUTDIR/sm80.log 2>&1; sum 20 < $OUTDIR/sm80.log
  timeout 90 $T --sm80-kernels --gtest_filter='GpuOps.*:Fixtures/GpuGolden.*/bf16:Fixtures/GpuGolden.*/fp8:CudaGraphs.*:MoeDecode.GroupedMatchesCpuAtSmallOddShapes' > $OUTDIR/sm80_suite.log 2>&1; sum 40 < $OUTDIR/sm80_suite.log
elif [[ $PART == quant ]]; then
  step "quantized kernels against the oracle; quantized fixtures present: $(ls $R/fixtures | grep -E 'awq|int8' | tr '\n' ' ')"
  g=$(ls $R/fixtures | grep -E 'awq|int8' | sed -e 's/tiny-v3-//' -e 's/-/_/g' -e 's|^|Fixtures/GpuGolden.*/|' | tr '\n' ':')
  timeout 150 $T --gtest_filter="GpuQuant.*:GpuQuantGraphs.*:GpuQuantDefaults.*:$g" > $OUTDIR/quant.log 2>&1; sum 50 < $OUTDIR/quant.log
  grep -E '^\[ err' $OUTDIR/quant.log | sort -t: -k2 -g | tail -8 | cut -c1-160
  step "quantized kernels: decode sizes, prefill, MoE"
  timeout 120 $T --gtest_filter='GpuQuantBench.*' > $OUTDIR/quant_bench.log 2>&1; grep -E '^\[ bench|Failure|rror' $OUTDIR/quant_bench.log | cut -c1-240 | head -60
  step "sm80 kernel set beside the sm90 one"
  timeout 60 $T --gtest_filter='Sm80Bench.*' > $OUTDIR/sm80_bench.log 2>&1; grep -E '^\[ bench|FAILED|Failure' $OUTDIR/sm80_bench.log | cut -c1-240 | head -30
  step "sm80 kernel set forced: quantized kernels and fixtures"
  timeout 100 $T --sm80-kernels --gtest_filter="GpuQuant.*:GpuQuantGraphs.*:$g" > $OUTDIR/sm80_quant.log 2>&1; sum 30 < $OUTDIR/sm80_quant.log
  if [[ -x $B/bench_fp8_prefill ]]; then
    step "FP8 GEMM: dense V3 shapes at 4096 tokens, grouped experts"
    timeout 60 $B/bench_fp8_prefill dense 4096 > $OUTDIR/gemm_dense.log 2>&1; tail -11 $OUTDIR/gemm_dense.log
    timeout 60 $B/bench_fp8_prefill grouped > $OUTDIR/gemm_grouped.log 2>&1; tail -18 $OUTDIR/gemm_grouped.log
  fi
else
  step "MLA decode and prefill: every variant beside the shipped one and the ceilings"
  timeout 100 $T --gtest_filter='GpuBench.MlaDecode:GpuBench.MlaAttention' > $OUTDIR/attn_bench.log 2>&1
  grep -E "bench|ceiling|mla |FAILED" $OUTDIR/attn_bench.log | cut -c1-200 | head -70
  step "FP8 GEMM: dense V3 shapes at 4096 tokens, grouped experts"
  timeout 60 $B/bench_fp8_prefill dense 4096 > $OUTDIR/gemm_dense.log 2>&1; tail -11 $OUTDIR/gemm_dense.log
  timeout 60 $B/bench_fp8_prefill grouped > $OUTDIR/gemm_grouped.log 2>&1; tail -18 $OUTDIR/gemm_grouped.log
  step "decode: fused decode path vs the unfused default, 4 V3 layers (3 dense + 1 MoE), dummy FP8, graphs"
  O="--model-path $V3 --load-format dummy --device cuda --json-model-override-args {\"num_hidden_layers\":4} --output-len 8 --profile-layers --fused-decode --decode-baseline"
  timeout 100 $B/dsserve bench-one-batch $O --batch-size 1 --input-len 1024 > $OUTDIR/decode_b1.log 2>&1
  grep -E '^\||ceilings|baseline|against|per decoder|rror' $OUTDIR/decode_b1.log | tail -30
  timeout 170 $B/dsserve bench-one-batch $O --batch-size 8 64 256 --input-len 4096 > $OUTDIR/decode_b8.log 2>&1
  grep -E '^\||ceilings|baseline|against|per decoder|rror' $OUTDIR/decode_b8.log | tail -45
fi
echo "== done ($(date +%T))"
