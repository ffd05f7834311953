#!/usr/bin/env bash
# One device-machine call for a session (carry [".gpu-carry"], bundle from
# `scripts/gpu-check.sh --bundle build`): every GPU test, greedy generation on the fixtures (plain,
# chain and tree speculation; with and without CUDA graphs), bench-one-batch of the issue's table
# (full-width DeepSeek-V3 layers, dummy FP8 weights; with CUDA graphs, and eager for comparison),
# the MoE decode benchmark, and `serve --device cuda` on the full-width dummy model answering
# /generate. Prints short tables; logs go to $OUT.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-/tmp/dsserve-gpu-out}
mkdir -p "$OUTDIR"
STAGES=${DSSERVE_STAGES:-tests,generate,bench,moe,serve}
# Stage "node": what one GPU can do of the 8xH200 run (issue 9): the real DeepSeek-V3 config with
# the layer count scaled to fit one H200 (DSSERVE_NODE_LAYERS, default 10: 3 dense + 7 MoE layers),
# dummy FP8 weights, TP1: bench-one-batch at batch 1, 32, 256 (input 1024, output 256), the
# speculative cost measurement, and bench-serving against the served model. DSSERVE_NODE_ARGS adds
# flags to all three, e.g. "--tp-size 8" (or "--tp-size 8 --ep-size 8") on 8 GPUs with
# DSSERVE_NODE_LAYERS=61; DSSERVE_NODE_SERVE_ARGS to serve alone (e.g. "--enable-dp-attention
# --dp-size 8").
# Stage "spec": the speculative cost measurement alone (scripts/gpu-spec-cost.sh's command).
# Stage "kv": bench-one-batch on 4 full-width layers with the BF16 and the FP8 latent cache.
# Stage "attention": the MLA kernels, with FlashMLA and cuDNN beside them (see the stage).
# Stage "quant": the quantized checkpoints: greedy generation on the AWQ and INT8 fixtures (on the
# quantized kernels with graphs, eager, EAGLE), and bench-one-batch on 4 full-width layers with dummy
# AWQ, channel-INT8 and block-INT8 weights (--quantization awq / w8a8_int8 / blockwise_int8).
has() { [[ ",$STAGES," == *",$1,"* ]]; }
if has tests; then
  bash "$ROOT/scripts/gpu-check.sh" ${DSSERVE_GTEST_FILTER:+--gtest_filter=$DSSERVE_GTEST_FILTER} 2>&1 | tail -70
else
  R=/tmp/dsserve-gpu; rm -rf "$R" && mkdir -p "$R" && tar -C "$R" -xJf "$ROOT/.gpu-carry/bundle.tar.xz"
fi
R=/tmp/dsserve-gpu
export LD_LIBRARY_PATH=$R/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=$R/bin/dsserve F=$R/fixtures V3=$ROOT/configs/deepseek-v3
if has generate; then
  echo "== greedy on cuda, 24 tokens (plain / plain eager / chain / tree)"
  for m in tiny-v3-bf16 tiny-v3-fp8; do
    for s in "" "--disable-cuda-graph" "--speculative-algorithm EAGLE" "--speculative-algorithm EAGLE --speculative-num-steps 2 --speculative-eagle-topk 2 --speculative-num-draft-tokens 4"; do
      $B generate --model-path $F/$m --device cuda --input-ids 478,30,371,143,343,403 --max-new-tokens 24 $s 2>&1 |
        python3 -c "import sys,json; l=sys.stdin.read().strip().splitlines()[-1]; d=json.loads(l) if l.startswith('{') else None; print('$m', '${s:-graphs}'[:40], d['output_ids'] if d else l, d and d['meta_info'].get('spec_verify_ct'))"
    done
  done
fi
if has bench; then
  echo "== bench-one-batch: DeepSeek-V3 width, 4 layers, dummy FP8, input 1024, output 64 (CUDA graphs)"
  $B bench-one-batch --model-path $V3 --load-format dummy --device cuda --json-model-override-args '{"num_hidden_layers": 4}' \
    --batch-size 1 8 64 256 --input-len 1024 --output-len 64 > "$OUTDIR/bench_graphs.log" 2>&1
  grep -E "^\||ceilings|CUDA graphs|error" "$OUTDIR/bench_graphs.log" | sed -E 's/^\[[^]]*\] \[[a-z]+\] //' | tail -12
  echo "== the same, eager (--disable-cuda-graph), batch 1 and 64"
  $B bench-one-batch --model-path $V3 --load-format dummy --device cuda --json-model-override-args '{"num_hidden_layers": 4}' \
    --batch-size 1 64 --input-len 1024 --output-len 64 --disable-cuda-graph > "$OUTDIR/bench_eager.log" 2>&1
  grep -E "^\||error" "$OUTDIR/bench_eager.log" | tail -5
fi
if has quant; then
  echo "== greedy on cuda, quantized fixtures, 24 tokens (plain / eager / EAGLE chain)"
  for m in tiny-v3-awq tiny-v3-int8-channel tiny-v3-int8-block; do
    q=""; [[ $m == tiny-v3-int8-channel ]] && q="--quantization w8a8_int8"
    for s in "" "--disable-cuda-graph" "--speculative-algorithm EAGLE"; do
      $B generate --model-path $F/$m --device cuda $q --input-ids 478,30,371,143,343,403 --max-new-tokens 24 $s 2>&1 |
        python3 -c "import sys,json; l=sys.stdin.read().strip().splitlines()[-1]; d=json.loads(l) if l.startswith('{') else None; print('$m', '${s:-graphs}'[:50], d['output_ids'] if d else l)"
    done
  done
  for q in awq w8a8_int8 blockwise_int8; do
    echo "== bench-one-batch: DeepSeek-V3 width, 4 layers, dummy $q weights, input 512, output 32 (CUDA graphs)"
    $B bench-one-batch --model-path $V3 --load-format dummy --quantization $q --device cuda \
      --json-model-override-args '{"num_hidden_layers": 4}' --batch-size 1 64 --input-len 512 --output-len 32 \
      > "$OUTDIR/bench_$q.log" 2>&1
    grep -E "^\||ceilings|memory:|error" "$OUTDIR/bench_$q.log" | sed -E 's/^\[[^]]*\] \[[a-z]+\] //' | cut -c1-300 | tail -8
  done
fi
if has moe && [[ -x $R/bin/bench_moe_decode ]]; then
  echo "== MoE decode (routing + experts), DeepSeek-V3 shape, FP8"
  $R/bin/bench_moe_decode 2>&1 | tail -12
fi
if has serve; then
  echo "== serve --device cuda: DeepSeek-V3 width, 4 layers, dummy FP8"
  $B serve --model-path $V3 --load-format dummy --json-model-override-args '{"num_hidden_layers": 4}' --device cuda \
    --skip-tokenizer-init --port 31555 --context-length 4096 > "$OUTDIR/serve.log" 2>&1 &
  for i in $(seq 1 180); do curl -sf localhost:31555/health >/dev/null && break; sleep 1; done
  grep -E "memory:|model ready|listening" "$OUTDIR/serve.log" | sed -E 's/^\[[^]]*\] \[[a-z]+\] //' | cut -c1-400
  for n in 1 2; do
    curl -s localhost:31555/generate -d '{"input_ids":[478,30,371,143,343,403],"sampling_params":{"max_new_tokens":16,"temperature":0}}' | cut -c1-300; echo
  done
  curl -s localhost:31555/generate -d '{"input_ids":[1,2,3],"sampling_params":{"max_new_tokens":8,"temperature":0.7,"top_p":0.9,"sampling_seed":5}}' | cut -c1-300; echo
  kill %1; wait; tail -2 "$OUTDIR/serve.log" | cut -c1-300
fi
if has node; then
  L=${DSSERVE_NODE_LAYERS:-10}
  O="{\"num_hidden_layers\": $L}"
  echo "== node: DeepSeek-V3 config, $L layers, dummy FP8 (${DSSERVE_NODE_ARGS:-TP1} ${DSSERVE_NODE_SERVE_ARGS:-})"
  $B bench-one-batch --model-path $V3 --load-format dummy --device cuda --json-model-override-args "$O" \
    --batch-size 1 32 256 --input-len 1024 --output-len 256 ${DSSERVE_NODE_ARGS:-} > "$OUTDIR/node_bench.log" 2>&1
  grep -E "^\||ceilings|memory:|error" "$OUTDIR/node_bench.log" | sed -E 's/^\[[^]]*\] \[?[a-z]+\]? //' | cut -c1-330 | tail -8
  echo "== node: speculative cost (verify / draft step times, projected speed-up at 2.44)"
  timeout 120 $B bench-speculative-cost --model-path $V3 --load-format dummy --device cuda \
    --layers 2 3 4 5 --batch-size 1 32 --context-tokens 1024 --repeats 20 ${DSSERVE_NODE_ARGS:-} 2>&1 |
    grep -v "Loading weights" | tail -14
  echo "== node: serve + bench-serving (random 1000-token inputs, 256-token outputs)"
  $B serve --model-path $V3 --load-format dummy --json-model-override-args "$O" --device cuda \
    --skip-tokenizer-init --port 31556 --context-length 4096 --cuda-graph-max-bs 256 --max-running-requests 256 \
    ${DSSERVE_NODE_ARGS:-} ${DSSERVE_NODE_SERVE_ARGS:-} > "$OUTDIR/node_serve.log" 2>&1 &
  for i in $(seq 1 240); do curl -sf localhost:31556/health >/dev/null && break; sleep 1; done
  grep -E "memory:|model ready" "$OUTDIR/node_serve.log" | sed -E 's/^\[[^]]*\] \[?[a-z]+\]? //' | cut -c1-400
  for c in 1 32 256; do
    n=$((c < 32 ? 8 : 2 * c))
    timeout 150 $B bench-serving --port 31556 --num-prompts $n --random-input-len 1000 --random-output-len 256 \
      --max-concurrency $c --vocab-size 129280 --output-file "$OUTDIR/node_serving.jsonl" > "$OUTDIR/node_serving_$c.log" 2>&1
    echo "concurrency $c: $(tail -1 "$OUTDIR/node_serving.jsonl" | cut -c1-600)"
  done
  kill %1; wait
fi
if has spec; then
  echo "== speculative cost (verify / draft step times, projected speed-up at 2.44)"
  timeout 150 $R/bin/dsserve bench-speculative-cost --model-path $ROOT/configs/deepseek-v3 --load-format dummy \
    --device cuda --layers 2 3 4 5 --batch-size 1 32 --context-tokens 1024 --repeats 20 2>&1 |
    grep -E "^\{|memory:" | sed -E 's/^\[[^]]*\] \[?[a-z]+\]? //' | cut -c1-700
fi
if has kv; then
  for d in bf16 fp8_e4m3; do
    echo "== bench-one-batch: DeepSeek-V3 width, 4 layers, dummy FP8, input 1024, output 64, --kv-cache-dtype $d"
    $R/bin/dsserve bench-one-batch --model-path $ROOT/configs/deepseek-v3 --load-format dummy --device cuda \
      --json-model-override-args '{"num_hidden_layers": 4}' --batch-size 1 8 64 256 --input-len 1024 --output-len 64 \
      --kv-cache-dtype $d > "$OUTDIR/bench_kv_$d.log" 2>&1
    grep -E "^\||ceilings|error" "$OUTDIR/bench_kv_$d.log" | sed -E 's/^\[[^]]*\] \[[a-z]+\] //' | tail -7
  done
fi
# Stage "attention": the MLA kernels' GPU tests and benchmarks, then the same shapes through FlashMLA's
# decode kernel and cuDNN's fused attention (PyTorch) on the same GPU, when the comparison tools
# travel in .compare/ (carry [".gpu-carry", ".compare"]; they are built outside the repository).
if has attention; then
  echo "== attention: GPU tests (wgmma, mma.sync, scalar kernels against the CPU backend)"
  timeout -s KILL 300 $R/bin/test_gpu --gtest_filter='GpuOps.Mla*:*GpuFp8Cache*Mla*' \
    --gtest_output=json:"$OUTDIR/attention_tests.json" > "$OUTDIR/attention_tests.log" 2>&1
  echo "exit $?: $(grep -cE '^\[       OK \]' "$OUTDIR/attention_tests.log") ok, $(grep -cE '^\[  FAILED  \]' "$OUTDIR/attention_tests.log") failed"
  grep -E "^\[  FAILED  \]|Failure|Expected|Which is|err_.*[0-9]" "$OUTDIR/attention_tests.log" | head -40 | cut -c1-300
  echo "== attention: benchmarks"
  timeout -s KILL 240 $R/bin/test_gpu --gtest_filter='GpuBench.MlaDecode:GpuBench.MlaAttention' \
    > "$OUTDIR/attention_bench.log" 2>&1
  grep -E "^\[ bench" "$OUTDIR/attention_bench.log" | sed -E 's/^\[ bench    \] //' | cut -c1-230
  if [[ -x $ROOT/.compare/flashmla_bench ]]; then
    echo "== FlashMLA (deepseek-ai/FlashMLA 9241ae3) on the same GPU"
    timeout -s KILL 120 $ROOT/.compare/flashmla_bench 2>&1 | tail -14 | cut -c1-250
  fi
  if [[ -f $ROOT/.compare/cudnn_sdpa.py ]]; then
    echo "== cuDNN fused attention through PyTorch on the same GPU"
    timeout -s KILL 180 python3 $ROOT/.compare/cudnn_sdpa.py --no-kernels 2>&1 | grep -vE "^#.*kernels" | tail -16 | cut -c1-250
  fi
fi
