#!/usr/bin/env bash
# `dsserve plan-memory --gpu`: the GPU model sets the memory per GPU, --sglang-configs plans the
# configurations SGLang lists for it (weight GiB and KV tokens per GPU, or why not), and a layout
# that does not fit is refused with the reason and the tensor-parallel size that would fit.
# Usage: plan_memory_gpu.sh DSSERVE_BINARY REPO_ROOT
set -u
dsserve=$1
repo=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() { echo "plan_memory_gpu: $*" >&2; cat "$out" >&2; exit 1; }
v3=(plan-memory --model-path "$repo/configs/deepseek-v3")

"$dsserve" "${v3[@]}" --gpu a100-80g --sglang-configs >"$out" 2>&1 || fail "--sglang-configs failed"
grep -qE '^\| bf16 \| 32 \(4 x 8\) \| TP32 over 32 GPUs \| [0-9.]+ \| [0-9]+ \| yes \|$' "$out" ||
  fail "no fitting BF16 row on 32 x A100 80GB"
echo "A100 80GB configurations:"; cat "$out"

"$dsserve" "${v3[@]}" --gpu a100-40g --sglang-configs >"$out" 2>&1 || fail "--sglang-configs (40GB) failed"
grep -qE '^\| bf16 \| 32 .*\| no: [0-9.]+ GiB of weights on the fullest GPU exceed the 34\.8 GiB budget per A100 40GB' \
  "$out" || fail "the A100 40GB BF16 row does not say why it does not fit"

# FP8 V3 on 4 A100s: refused, naming the bytes, the budget and a size that fits.
if "$dsserve" "${v3[@]}" --gpu a100-80g --tp 4 >"$out" 2>&1; then fail "TP4 on A100 80GB accepted"; fi
grep -qF "TP4 over 4 GPUs does not fit:" "$out" || fail "no refusal"
grep -qF "budget per A100 80GB (79.2 GiB x --mem-fraction-static 0.88)" "$out" || fail "the refusal has no reason"
grep -qF "(--tp-size 16 fits)" "$out" || fail "the refusal does not say which size fits"
"$dsserve" "${v3[@]}" --gpu a100-80g --tp 16 >"$out" 2>&1 || fail "TP16 on A100 80GB refused"
grep -qF "(A100 80GB)" "$out" || fail "the plan does not name the GPU"

if "$dsserve" "${v3[@]}" --gpu v100 >"$out" 2>&1; then fail "--gpu v100 accepted"; fi
grep -qF "expected one of a100-80g, a100-40g, h100, h200, found 'v100'" "$out" || fail "--gpu v100: no clear error"
if "$dsserve" "${v3[@]}" --gpu h100 --gpu-memory-gib 40 >"$out" 2>&1; then fail "--gpu with --gpu-memory-gib accepted"; fi
echo "plan_memory_gpu: ok"
