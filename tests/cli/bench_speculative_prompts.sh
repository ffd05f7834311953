#!/usr/bin/env bash
# `dsserve bench-speculative --prompts-file` on the shipped demo model: held-back King James text
# as prompts gives an EAGLE acceptance length well above the 1.0 of random prompts on a random
# model; a missing file, a line that is neither a string nor token ids, and a token id outside the
# vocabulary are refused naming the file, the line and what was found.
# Usage: bench_speculative_prompts.sh DSSERVE_BINARY REPO_ROOT
set -u
dsserve=$1
repo=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "bench_speculative_prompts: $*" >&2; exit 1; }
model="$repo/models/demo"
[ -f "$model/config.json" ] || fail "models/demo is absent from the checkout"
bench=(bench-speculative --model-path "$model" --device cpu --batch-size 1 --output-len 24)

head -4 "$repo/tools/demo-model/held_back_prompts.jsonl" >"$work/prompts.jsonl"
timeout 300 "$dsserve" "${bench[@]}" --prompts-file "$work/prompts.jsonl" --num-prompts 4 --steps 0 3 \
  >"$work/out.jsonl" 2>"$work/err.log" || { cat "$work/err.log"; fail "bench-speculative failed"; }
cat "$work/out.jsonl"
python3 - "$work/out.jsonl" <<'PY' || fail "unexpected results (above)"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert [r["steps"] for r in rows] == [0, 3], rows
assert rows[0]["acc_length"] == 1.0, rows[0]
assert rows[1]["acc_length"] > 1.8, f"EAGLE acceptance on held-back text {rows[1]['acc_length']} (expected > 1.8)"
PY

# refused EXPECTED-TEXT FILE-CONTENT: bench-speculative must exit non-zero and say EXPECTED-TEXT.
refused() {
  local expected=$1
  printf '%s' "$2" >"$work/bad.jsonl"
  if timeout 60 "$dsserve" "${bench[@]}" --prompts-file "$work/bad.jsonl" --steps 0 >"$work/out.log" 2>&1; then
    fail "accepted $2 (expected a refusal saying '$expected')"
  fi
  grep -qF -- "$expected" "$work/out.log" || { cat "$work/out.log"; fail "the refusal does not say '$expected'"; }
  echo "refused as expected: $expected"
}
refused "bad.jsonl line 2: expected a JSON string or an array of token ids, found {\"text\"" $'"In the beginning"\n{"text": 1}\n'
refused "bad.jsonl line 1: expected token ids in [0, " $'[5, -1]\n'
refused "token id 99999 is outside the model's vocabulary of 4096" $'[5, 99999]\n'
refused "bad.jsonl: no prompts in it" $'\n\n'
if timeout 60 "$dsserve" "${bench[@]}" --prompts-file "$work/absent.jsonl" --steps 0 >"$work/out.log" 2>&1; then
  fail "accepted a missing prompts file"
fi
grep -qF "absent.jsonl: cannot open it" "$work/out.log" || { cat "$work/out.log"; fail "missing file not named"; }
echo "bench_speculative_prompts: ok"
