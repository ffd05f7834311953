#!/usr/bin/env bash
# `dsserve serve` with data-parallel attention on the CPU: the flags are accepted (the server starts
# with two attention groups over four ranks and expert parallelism, /get_server_info reports
# dp_size 2, /generate requests sent together spread over both groups and give the outputs of one
# device, /metrics sums the groups: twice the KV capacity, every prompt token counted once)
# and unsupported combinations are refused with the reason.
# Usage: serve_dp_flags.sh DSSERVE_BINARY
set -u
dsserve=$1
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "serve_dp_flags: $*" >&2; exit 1; }

"$dsserve" init-tiny-model "$work/tiny" >"$work/init.log" 2>&1 || { cat "$work/init.log"; fail "init-tiny-model failed"; }
common=(serve --model-path "$work/tiny" --device cpu --host 127.0.0.1 --port 0 --skip-tokenizer-init
        --context-length 256 --max-total-tokens 2048)

# refused EXPECTED-TEXT FLAGS...: the server must exit non-zero and say EXPECTED-TEXT.
refused() {
  local expected=$1
  shift
  if timeout 60 "$dsserve" "${common[@]}" "$@" >"$work/out.log" 2>&1; then
    fail "accepted $* (expected a refusal saying '$expected')"
  fi
  grep -qF -- "$expected" "$work/out.log" || { cat "$work/out.log"; fail "$*: the refusal does not say '$expected'"; }
  echo "refused as expected: $*"
}
refused "--dp-size 3 must divide --tp-size 4" --enable-dp-attention --dp-size 3 --tp-size 4
refused "add --enable-dp-attention" --dp-size 2 --tp-size 2
refused "speculative decoding is not available with data-parallel attention" \
  --enable-dp-attention --dp-size 2 --tp-size 2 --speculative-algorithm EAGLE
refused "attention heads do not divide" --enable-dp-attention --dp-size 2 --tp-size 16

# generate IDS: output_ids of a greedy /generate of 6 tokens on the server at $port.
generate() {
  curl -sf -X POST "http://127.0.0.1:$port/generate" -H 'Content-Type: application/json' \
    -d "{\"input_ids\": $1, \"sampling_params\": {\"max_new_tokens\": 6, \"temperature\": 0, \"ignore_eos\": true}}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["output_ids"])'
}
# start FLAGS...: starts the server and sets $pid and $port.
start() {
  : >"$work/serve.log"  # emptied here: the previous server's lines must not be read before the child's redirection
  "$dsserve" "${common[@]}" "$@" 2>"$work/serve.log" &
  pid=$!
  port=""
  for _ in $(seq 1 600); do
    port=$(sed -n 's/^dsserve: listening on [^:]*:\([0-9]*\)$/\1/p' "$work/serve.log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; fail "server exited early with $*"; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$work/serve.log"; fail "server did not report its port with $*"; }
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "server exited with $? after SIGTERM"
  pid=""
}
prompts=("[5, 6, 7, 8, 9]" "[11, 12, 13]" "[20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]" "[40, 41]")

start
declare -a want
for i in "${!prompts[@]}"; do want[$i]=$(generate "${prompts[$i]}") || fail "/generate failed on one device"; done
stop

start --enable-dp-attention --dp-size 2 --tp-size 4 --ep-size 4 --enable-metrics
info=$(curl -sf "http://127.0.0.1:$port/get_server_info") || fail "/get_server_info failed"
echo "$info" | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["dp_size"] == 2 and d["enable_dp_attention"] is True and d["tp_size"] == 4, d' ||
  fail "/get_server_info does not report dp_size 2: $info"
for i in "${!prompts[@]}"; do generate "${prompts[$i]}" >"$work/got.$i" & done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null
for i in "${!prompts[@]}"; do
  got=$(cat "$work/got.$i")
  [ "$got" = "${want[$i]}" ] || fail "prompt $i: data-parallel attention gave $got, one device ${want[$i]}"
done
# metric NAME: its value on the server's /metrics.
metric() {
  curl -sf "http://127.0.0.1:$port/metrics" | python3 -c '
import sys
name = sys.argv[1]
for line in sys.stdin:
    if line.startswith(name + " ") or line.startswith(name + "{"):
        print(int(float(line.split()[-1]))); break' "$1"
}
# expect_metric NAME VALUE: waits up to 5 s (the stats follow a step's last events by a moment).
expect_metric() {
  local v=""
  for _ in $(seq 1 50); do
    v=$(metric "$1")
    [ "$v" = "$2" ] && return 0
    sleep 0.1
  done
  fail "/metrics: $1 is $v, expected $2"
}
expect_metric sglang:max_total_num_tokens 4096  # 2 groups x 2048
expect_metric sglang:prompt_tokens_total 21
expect_metric sglang:generation_tokens_total 24
expect_metric sglang:num_running_reqs 0
stop
grep -q "data-parallel attention: 2 groups of 2" "$work/serve.log" || { cat "$work/serve.log"; fail "the log does not name the layout"; }
echo "serve_dp_flags: ok"
