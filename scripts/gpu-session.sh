#!/usr/bin/env bash
# One device-machine call for a session: every GPU test (scripts/gpu-check.sh), then the engine end
# to end on the GPU from the bundle: greedy generation with and without speculative decoding on both
# fixtures, bench-one-batch, bench-speculative, and the server answering /generate.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/gpu-check.sh" 2>&1 | tail -45
R=/tmp/dsserve-gpu
export LD_LIBRARY_PATH=$R/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=$R/bin/dsserve F=$R/fixtures
echo "== greedy on cuda: plain / chain / tree (24 tokens, fixture prompt)"
for m in tiny-v3-bf16 tiny-v3-fp8; do
  for s in "" "--speculative-algorithm EAGLE" "--speculative-algorithm EAGLE --speculative-num-steps 2 --speculative-eagle-topk 2 --speculative-num-draft-tokens 4"; do
    $B generate --model-path $F/$m --device cuda --input-ids 478,30,371,143,343,403 --max-new-tokens 24 $s 2>&1 |
      python3 -c "import sys,json; l=sys.stdin.read().strip().splitlines()[-1]; d=json.loads(l) if l.startswith('{') else None; print('$m', '${s:-plain}'[:40], d['output_ids'] if d else l, d and d['meta_info'].get('spec_verify_ct'))"
  done
done
echo "== bench-one-batch (fixture fp8)"
$B bench-one-batch --model-path $F/tiny-v3-fp8 --device cuda --batch-size 1 8 64 --input-len 256 --output-len 32 2>&1 | tail -12
echo "== bench-speculative (fixture bf16)"
$B bench-speculative --model-path $F/tiny-v3-bf16 --device cuda --batch-size 1 8 --steps 0 1 3 --topk 1 2 --num-draft-tokens 0 4 --input-len 64 --output-len 32 --num-prompts 8 2>/dev/null
echo "== serve --device cuda"
$B serve --model-path $F/tiny-v3-bf16 --device cuda --skip-tokenizer-init --port 31555 --max-total-tokens 8192 > /tmp/serve.log 2>&1 &
for i in $(seq 1 60); do curl -sf localhost:31555/health >/dev/null && break; sleep 1; done
curl -s localhost:31555/generate -d '{"input_ids":[478,30,371,143,343,403],"sampling_params":{"max_new_tokens":8,"temperature":0}}'; echo
kill %1; wait; tail -3 /tmp/serve.log
