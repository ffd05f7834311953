#!/usr/bin/env bash
# The device calls that verify kernel work: each part is a list of steps, each step bounded by its own
# timeout, with logs under $OUT and short summaries on stdout. Carry one bundle of
# `scripts/gpu-check.sh --bundle build` as .gpu-carry*/bundle.tar.xz; a call carries at most 64 MiB
# with the tree, so a bundle holds only the binaries and fixtures its part needs (steps whose binary
# is missing are left out; fixture tests run for the fixtures present).
# Parts:
#   short  prefill correctness, the decode step at batch 8 and 64, quantized correctness, decode
#          correctness and the GEMM benchmark while the call has time (about four minutes)
#   attn   attention correctness and benchmarks, the fused decode path's tests and step time at batch 1
#   final  attention correctness and benchmarks, quantized kernels and fixtures, GEMM, the decode step
#          at batch 8 and 64, quantized and sm80 benchmarks (later steps left out past the call's time)
#   check  every correctness group: decode paths and golden fixtures, attention, sm90 GEMM, demo model,
#          the sm80 set forced; then speculative decoding's cost and the demo model's bench while time is left
#   quant  quantized kernels and fixtures, their benchmarks and decode step, the sm80 benchmark and
#          quantized tests under the sm80 set, GEMM (later steps left out past the call's time)
#   one    (one call for everything) recorded forwards and the demo model's tests, its speculative
#          bench, structured output on the GPU, the golden fixtures, speculative cost, fused decode
#   issues the demo model's speculative decoding, structured output on the GPU, the quantized
#          fixtures present (both kernel sets), speculative decoding's cost, the demo model's tests
#   bench  attention and GEMM benchmarks, the decode step at batch 1, 8, 64 and 256
#   last   the correctness groups at once (quantized kernels and fixtures on both kernel sets, the
#          MoE prefill path choice, MoE decode under sm80), speculative cost before and after,
#          the quantized decode-size benchmark; the parallel groups' logs come back as one archive
#   cand   a candidate test binary (bin/test_gpu_candidate, built from a branch) against the oracle on
#          the kernels it changes, both binaries' benchmarks in turn; MoE prefill by token count;
#          speculative cost with bin/dsserve_before and bin/dsserve in turn; the GEMM benchmark
# Usage (from the repository root on the device machine): scripts/gpu-verify.sh PART
set -u
PART=${1:?short, attn, final, check, quant, one, issues, bench, cand or last}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-/tmp/dsserve-gpu-out}; mkdir -p "$OUTDIR"
R=/tmp/dsserve-gpu
BUNDLE=$(ls "$ROOT"/.gpu-carry*/bundle.tar.xz | head -1)
rm -rf $R; mkdir -p $R; tar -C $R -xJf "$BUNDLE"
export LD_LIBRARY_PATH=$R/lib DSSERVE_FIXTURES=$R/fixtures
B=$R/bin V3=$ROOT/configs/deepseek-v3
T=$B/test_gpu
QFIX=$(ls $R/fixtures | grep -E 'awq|int8' | sed -e 's/tiny-v3-//' -e 's/-/_/g' -e 's|^|Fixtures/GpuGolden.*/|' | tr '\n' ':')
sum() { grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|Failure|Which is|Expected|^\[ stats|^\[ greedy|rror" | cut -c1-220 | head -${1:-40}; }
benches() { grep -E '^\[ bench|ceiling|FAILED|Failure|rror' | cut -c1-200 | head -${1:-40}; }
step() { echo "== $1 ($(date +%T), ${SECONDS} s)"; }
# gtest LOG SECONDS FILTER [FLAGS...]: the test binary on a filter, its exit status and summary.
gtest() {
  local log=$1 secs=$2 filter=$3; shift 3
  (cd "$ROOT" && timeout "$secs" $T --gtest_filter="$filter" "$@") > $OUTDIR/$log 2>&1; echo "rc $?"
}
# decode_step LOG SECONDS BATCHES...: bench-one-batch on 4 V3 layers (3 dense + 1 MoE), dummy FP8,
# graphs, context 1024: the fused decode path (the default) beside the unfused kernels. STEP_FLAGS
# replaces --decode-baseline (e.g. a --quantization).
decode_step() {
  local log=$1 secs=$2; shift 2
  [[ -x $B/dsserve ]] || { echo "(no dsserve in the bundle)"; return; }
  timeout "$secs" $B/dsserve bench-one-batch --model-path $V3 --load-format dummy --device cuda \
    --json-model-override-args '{"num_hidden_layers":4}' --output-len 8 --profile-layers \
    ${STEP_FLAGS:---decode-baseline} --batch-size "$@" --input-len 1024 > $OUTDIR/$log 2>&1; echo "rc $?"
  grep -E '^\||ceilings|baseline|against|per decoder|rror' $OUTDIR/$log | cut -c1-200 | tail -60
}

s_prefill() {
  step "MLA prefill kernels with cached prefixes (each named before it runs)"
  gtest prefill.log 45 'GpuOps.MlaExpandedCausalWithPrefixes:GpuOps.MlaExpandedMmaLongAndStrided'
  grep -E '^\[ kernel|FAILED|PASSED|Failure|Which|err' $OUTDIR/prefill.log | cut -c1-200 | tail -16
}
s_decode_attn() {
  step "MLA decode kernels against the oracle"
  gtest attn.log 200 'GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:*GpuFp8Cache*Mla*'
  sum 30 < $OUTDIR/attn.log
}
s_attn_bench() {
  step "MLA decode and prefill beside the ceilings"
  gtest attn_bench.log 70 'GpuBench.MlaDecode:GpuBench.MlaAttention'; benches 60 < $OUTDIR/attn_bench.log
}
s_quant() {
  step "quantized kernels against the oracle and the quantized fixtures present"
  gtest quant.log 240 "GpuQuant.*:GpuQuantGraphs.*:GpuQuantFallback.*:$QFIX"; sum 40 < $OUTDIR/quant.log
}
s_quant_sm80() {
  step "sm80 kernel set forced: quantized kernels and fixtures"
  gtest sm80_quant.log 240 "GpuQuant.*:GpuQuantGraphs.*:$QFIX" --sm80-kernels; sum 30 < $OUTDIR/sm80_quant.log
}
s_quant_bench() {
  step "quantized kernels: decode sizes, prefill, MoE"
  gtest quant_bench.log 60 'GpuQuantBench.*'; benches 40 < $OUTDIR/quant_bench.log
}
# A candidate test binary (bin/test_gpu_candidate, built from a branch) beside the bundle's own: its
# correctness on the kernels it changes, then both binaries' benchmarks in turn on the same GPU.
cand_bin() { [[ -x $B/test_gpu_candidate ]] || { echo "(no test_gpu_candidate in the bundle)"; return 1; }; }
s_cand_tests() {
  cand_bin || return
  step "candidate: MLA decode and quantized kernels against the oracle"
  T=$B/test_gpu_candidate gtest cand_attn.log 100 'GpuOps.MlaDecodeKernelsOverV3Shapes:GpuOps.MlaAbsorbedOverPagedCache:GpuOps.MlaDecodeGraphReplayFollowsDeviceLengths:*GpuFp8Cache*Mla*'
  sum 30 < $OUTDIR/cand_attn.log
  T=$B/test_gpu_candidate gtest cand_quant.log 110 "GpuQuant.*:GpuQuantGraphs.*:$QFIX"; sum 30 < $OUTDIR/cand_quant.log
}
cand_bench() {
  cand_bin || return
  step "MLA decode and quantized benchmarks, the bundle's binary then the candidate (round $1)"
  gtest bench_main$1.log 90 'GpuBench.MlaDecode:GpuQuantBench.*'; benches 60 < $OUTDIR/bench_main$1.log
  T=$B/test_gpu_candidate gtest bench_cand$1.log 90 'GpuBench.MlaDecode:GpuQuantBench.*'; benches 60 < $OUTDIR/bench_cand$1.log
}
s_cand_bench1() { cand_bench 1; }
s_cand_bench2() { cand_bench 2; }
# Speculative decoding's cost with the bundle's dsserve and with bin/dsserve_before (a build from
# before a runner change), in turn on the same GPU.
s_spec_before_after() {
  [[ -x $B/dsserve && -x $B/dsserve_before ]] || { echo "(no dsserve_before in the bundle)"; return; }
  local bin
  for bin in dsserve_before dsserve; do
    step "speculative decoding's cost, $bin (2 and 4 layers, batch 1 and 32)"
    timeout 100 $B/$bin bench-speculative-cost --model-path $V3 --load-format dummy --device cuda \
      --layers 2 4 --batch-size 1 32 --context-tokens 1024 --repeats 10 > $OUTDIR/spec_$bin.log 2>&1; echo "rc $?"
    grep -v 'Loading weights' $OUTDIR/spec_$bin.log | cut -c1-220 | tail -12
  done
}
s_moe_sizes() {
  [[ -x $B/bench_fp8_prefill ]] || return
  step "MoE prefill by token count: sm90 grouped path against cuBLASLt per expert"
  timeout 120 $B/bench_fp8_prefill moe > $OUTDIR/moe_sizes.log 2>&1; echo "rc $?"; tail -8 $OUTDIR/moe_sizes.log
}
s_sm80_bench() {
  step "sm80 kernel set beside the sm90 one"
  gtest sm80_bench.log 40 'Sm80Bench.*'; benches 30 < $OUTDIR/sm80_bench.log
}
s_gemm() {
  [[ -x $B/bench_fp8_prefill ]] || return
  step "FP8 GEMM: dense V3 shapes at 4096 tokens, grouped experts"
  timeout 40 $B/bench_fp8_prefill dense 4096 > $OUTDIR/gemm_dense.log 2>&1; tail -11 $OUTDIR/gemm_dense.log
  timeout 40 $B/bench_fp8_prefill grouped > $OUTDIR/gemm_grouped.log 2>&1; tail -18 $OUTDIR/gemm_grouped.log
}
s_fused() {
  step "fused decode path: its MLP, MoE and the FP8 golden fixture"
  gtest fused.log 60 'W8A8Decode.*:MoeW8A8.*:MlaFusion*:Fixtures/GpuGolden.*/fp8_fused_decode'; sum 30 < $OUTDIR/fused.log
}
s_golden() {
  step "sampling, FP8 linears and routing, golden fixtures bf16 and fp8 (the default kernels)"
  gtest golden.log 170 'GpuSampling.*:Fixtures/GpuGolden.*/bf16:Fixtures/GpuGolden.*/fp8:GpuOps.MoeRoute*:GpuOps.LinearFp8*:Fp8DecodeLinear.*'
  sum 40 < $OUTDIR/golden.log
}
s_graphs() {
  step "recorded forwards (decode, verify, MTP draft) against eager ones, the demo model"
  gtest graphs.log 120 'CudaGraphs.*:DemoModelGpu.*:GpuSpeculative*'; sum 30 < $OUTDIR/graphs.log
}
s_gemm_tests() {
  step "sm90 FP8 GEMM"
  gtest gemm.log 70 'Fp8GemmSm90.*:Fp8Prefill.*'; sum 30 < $OUTDIR/gemm.log
}
s_demo() {
  step "demo model"
  gtest demo.log 40 'DemoModelGpu.*'; sum 20 < $OUTDIR/demo.log
}
s_sm80() {
  step "sm80 kernel set"
  gtest sm80.log 40 'Sm80Kernels.*'; sum 20 < $OUTDIR/sm80.log
  gtest sm80_suite.log 90 'GpuOps.*:Fixtures/GpuGolden.*/bf16:Fixtures/GpuGolden.*/fp8:CudaGraphs.*:MoeDecode.GroupedMatchesCpuAtSmallOddShapes' --sm80-kernels
  sum 40 < $OUTDIR/sm80_suite.log
}
s_quant_step() {
  local q
  for q in awq w8a8_int8; do
    step "decode step at batch 1, 8 and 64, $q weights on the quantized kernels"
    STEP_FLAGS="--quantization $q" decode_step step_$q.log 80 1 8 64
  done
}
s_quant_fixtures() {
  step "quantized fixtures through CUDA, the quantized kernels and the sm80 set"
  gtest quant_fixtures.log 60 "$QFIX"; sum 20 < $OUTDIR/quant_fixtures.log
  gtest quant_fixtures_sm80.log 60 "$QFIX" --sm80-kernels; sum 20 < $OUTDIR/quant_fixtures_sm80.log
}
s_grammar() {
  [[ -x $B/dsserve ]] || return
  step "structured output: compile, mask and constrained decode on 4 V3 layers"
  timeout 150 $B/dsserve bench-grammar --device cuda --model-path $V3 --load-format dummy \
    --json-model-override-args '{"num_hidden_layers":4}' --tokenizer-path $R/fixtures/deepseek-v3-tokenizer \
    --batch-size 64 --output-len 64 > $OUTDIR/grammar.log 2>&1; echo "rc $?"
  grep -v 'Loading weights' $OUTDIR/grammar.log | cut -c1-200 | tail -40
}
s_demo_bench() {
  [[ -x $B/dsserve ]] || return
  step "speculative decoding on the demo model: bench-speculative and bench-serving"
  (cd "$ROOT" && timeout 200 tools/demo-model/bench_device.sh $B/dsserve cuda $OUTDIR/demo) 2>&1 | cut -c1-400 | tail -40
}
s_spec_cost() {
  [[ -x $B/dsserve ]] || return
  step "speculative decoding's cost on V3 layers (2-5 layers, batch 1 and 32)"
  timeout 150 $B/dsserve bench-speculative-cost --model-path $V3 --load-format dummy --device cuda \
    --layers 2 3 4 5 --batch-size 1 32 --context-tokens 1024 --repeats 10 > $OUTDIR/spec_cost.log 2>&1; echo "rc $?"
  grep -v 'Loading weights' $OUTDIR/spec_cost.log | cut -c1-220 | tail -30
}
s_decode_b1() { step "decode step at batch 1"; decode_step decode_b1.log 100 1; }
s_decode_b8_64() { step "decode step at batch 8 and 64"; decode_step decode_b8_64.log 80 8 64; }
s_decode_b8_256() { step "decode step at batch 8, 64 and 256"; decode_step decode_b8_256.log 170 8 64 256; }

# Correctness groups at once, each a test process of its own (the CPU oracle is single-threaded
# apart from OpenBLAS, held to two threads a process): the quantized kernels and fixtures on both
# kernel sets, the MoE prefill path choice, MoE decode under sm80.
s_parallel() {
  step "in parallel: quantized kernels and fixtures (sm90 and sm80), MoE prefill choice, MoE decode (sm80)"
  local rest="GpuQuant.LinearAwqOddShapes:GpuQuant.LinearInt8OddShapes:GpuQuant.AwqAnd*:GpuQuant.Expansion*:GpuQuant.SplitK*:GpuQuantGraphs.*:GpuQuantFallback.*:$QFIX"
  local -a jobs=(
    "p_experts_awq|GpuQuant.ExpertsOnBothPathsAwq|" "p_experts_i8b|GpuQuant.ExpertsOnBothPathsInt8Block|"
    "p_experts_i8c|GpuQuant.ExpertsOnBothPathsInt8Channel|" "p_rest|$rest|" "p_moe_prefill|Fp8Prefill.*|"
    "p80_experts_awq|GpuQuant.ExpertsOnBothPathsAwq|--sm80-kernels"
    "p80_experts_i8b|GpuQuant.ExpertsOnBothPathsInt8Block|--sm80-kernels"
    "p80_experts_i8c|GpuQuant.ExpertsOnBothPathsInt8Channel|--sm80-kernels"
    "p80_v3_awq|GpuQuant.LinearAwqAtDeepSeekV3Shapes|--sm80-kernels"
    "p80_v3_i8|GpuQuant.LinearInt8AtDeepSeekV3Shapes|--sm80-kernels"
    "p80_rest|$rest:MoeDecode.GroupedMatchesCpuAtSmallOddShapes:MoeDecode.ExpertsRunCountsDistinctExperts|--sm80-kernels")
  # A candidate test binary (bin/test_gpu_candidate, built from a branch): its INT8 quantization
  # and INT8 products on both kernel sets.
  if [[ -x $B/test_gpu_candidate ]]; then
    jobs+=("pc_int8|Int8ActivationQuant.*:GpuQuant.LinearInt8*:GpuQuant.ExpertsOnBothPathsInt8Channel|"
           "pc80_int8|Int8ActivationQuant.*:GpuQuant.LinearInt8*|--sm80-kernels")
  fi
  export OPENBLAS_NUM_THREADS=2
  local j name filter flags
  for j in "${jobs[@]}"; do
    IFS='|' read -r name filter flags <<< "$j"
    if [[ $name == pc* ]]; then
      T=$B/test_gpu_candidate gtest $name.log ${PAR_SECS:-150} "$filter" $flags > $OUTDIR/$name.rc &
    else
      gtest $name.log ${PAR_SECS:-150} "$filter" $flags > $OUTDIR/$name.rc &
    fi
  done
  wait
  unset OPENBLAS_NUM_THREADS
  for j in "${jobs[@]}"; do
    name=${j%%|*}
    echo "-- $name: $(cat $OUTDIR/$name.rc) ($(grep -c '^\[       OK \]' $OUTDIR/$name.log) OK)"; rm -f $OUTDIR/$name.rc
    grep -E "^\[  (FAILED|SKIPPED) |^\[  PASSED|Failure|Which is|Expected|^\[ stats|rror" $OUTDIR/$name.log | grep -v '^\[  SKIPPED \] Fixtures' | cut -c1-200 | head -12
  done
  (cd $OUTDIR && tar czf parallel_logs.tgz p*.log && rm -f p*.log)  # at most 8 files come back
}
s_quant_decode_bench() {
  step "quantized products at decode sizes (then the candidate's, if any)"
  gtest quant_decode_bench.log 60 'GpuQuantBench.DecodeLinears'; benches 40 < $OUTDIR/quant_decode_bench.log
  [[ -x $B/test_gpu_candidate ]] || return
  T=$B/test_gpu_candidate gtest quant_decode_bench_cand.log 60 'GpuQuantBench.DecodeLinears'
  grep -E 'channel' $OUTDIR/quant_decode_bench_cand.log | cut -c1-200 | head -40
}
# run CAP STEP...: the steps in order; a step that starts past CAP seconds of the call is left out.
run() {
  local cap=$1; shift
  for s in "$@"; do
    if (( SECONDS > cap )); then echo "== left out past ${cap} s: $s"; continue; fi
    $s
  done
}

nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader 2>/dev/null
case $PART in
  short) run 150 s_prefill s_decode_b8_64 s_quant s_decode_attn s_gemm ;;
  attn) run 9999 s_prefill s_decode_attn s_attn_bench s_fused s_decode_b1 ;;
  final) run 420 s_prefill s_decode_attn s_attn_bench s_quant s_gemm s_decode_b8_64 s_quant_bench s_sm80_bench ;;
  check) run 420 s_fused s_golden s_prefill s_decode_attn s_gemm_tests s_demo s_sm80 s_spec_cost s_demo_bench ;;
  quant) run 480 s_quant s_quant_bench s_quant_step s_sm80_bench s_quant_sm80 s_gemm ;;
  one) run 430 s_graphs s_demo_bench s_grammar s_golden s_spec_cost s_fused ;;
  issues) run 430 s_demo_bench s_grammar s_quant_fixtures s_spec_cost s_demo ;;
  bench) run 9999 s_attn_bench s_gemm s_decode_b1 s_decode_b8_256 ;;
  cand) run 470 s_cand_tests s_cand_bench1 s_moe_sizes s_spec_before_after s_cand_bench2 s_gemm ;;
  last) run 200 s_parallel s_spec_before_after s_quant_decode_bench ;;
  *) echo "unknown part $PART"; exit 2 ;;
esac
echo "== done ($(date +%T), ${SECONDS} s)"
