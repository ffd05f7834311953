#!/usr/bin/env bash
# Speculative decoding on the demo model on one device, from the repository root, with no Python:
# `dsserve bench-speculative` on the held-back prompts at batch 1 and 32 (steps 0-3, topk 1 and 2),
# then `dsserve bench-serving` on the held-back ShareGPT conversations against a plain server and
# an EAGLE server (3 steps, topk 1) at concurrency 1 and 32. Prints the JSON lines and a summary.
# Usage: tools/demo-model/bench_device.sh DSSERVE_BINARY DEVICE [OUT_DIR]
#   PROMPTS_B1 / PROMPTS_B32 (16 / 64) and OUTPUT_LEN (64) shorten it.
set -uo pipefail
bin=${1:?usage: bench_device.sh DSSERVE_BINARY DEVICE [OUT_DIR]}
device=${2:?usage: bench_device.sh DSSERVE_BINARY DEVICE [OUT_DIR]}
out=${3:-$(mktemp -d)}
mkdir -p "$out"
here=tools/demo-model
[ -f models/demo/config.json ] || { echo "bench_device: run from the repository root (models/demo absent)"; exit 2; }
len=${OUTPUT_LEN:-64}

for b in 1 32; do
  n=$([ "$b" = 1 ] && echo "${PROMPTS_B1:-16}" || echo "${PROMPTS_B32:-64}")
  "$bin" bench-speculative --model-path models/demo --device "$device" --prompts-file $here/held_back_prompts.jsonl \
    --num-prompts "$n" --output-len "$len" --batch-size "$b" --steps 0 1 2 3 --topk 1 2 \
    --output "$out/bench_speculative.jsonl" 2>"$out/bench_speculative_b$b.log" | grep '^{' ||
    { tail -5 "$out/bench_speculative_b$b.log"; echo "bench_device: bench-speculative batch $b failed"; }
done

port=$((30200 + RANDOM % 500))
for setting in plain eagle; do
  flags=()
  [ "$setting" = eagle ] && flags=(--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1
                                   --speculative-num-draft-tokens 4)
  "$bin" serve --model-path models/demo --device "$device" --host 127.0.0.1 --port "$port" "${flags[@]}" \
    >"$out/serve_$setting.log" 2>&1 &
  pid=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
  for c in 1 32; do
    "$bin" bench-serving --port "$port" --dataset-path $here/held_back_sharegpt.json --num-prompts $((c < 8 ? 8 : 2 * c)) \
      --max-concurrency "$c" --random-output-len "$len" --output-file "$out/bench_serving_$setting.jsonl" >/dev/null 2>"$out/bench_serving.log" ||
      { tail -5 "$out/bench_serving.log"; echo "bench_device: bench-serving $setting $c failed"; }
  done
  curl -s "http://127.0.0.1:$port/get_server_info" | grep -o '"avg_spec_accept_length": *[0-9.]*' | sed "s/^/$setting: /"
  kill "$pid"
  wait "$pid" 2>/dev/null
done
for f in "$out"/bench_serving_*.jsonl; do
  while read -r line; do
    echo "$(basename "$f" .jsonl) $(echo "$line" | grep -o '"max_concurrency": *[0-9]*\|"output_throughput": *[0-9.]*\|"median_ttft_ms": *[0-9.]*' | tr '\n' ' ')"
  done <"$f"
done
echo "bench_device: results in $out"
