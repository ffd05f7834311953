#!/usr/bin/env bash
# Makes models/demo from scratch: corpus and tokenizer, training in two stages (CUDA when present,
# else the CPU), FP8 export, then the export checks against a built dsserve. Usage (from the
# repository root):
#   tools/demo-model/make_demo_model.sh WORK_DIR [stage-1 train.py flags...]
# Stage 2 starts from stage 1's weights with more of the recitation exchanges; its flags come from
# $STAGE2_FLAGS (default: the shipped model's, a 2,400 s budget on the CPU).
# Needs Debian's bible-kjv (the `bible` program and its text), python3-torch and python3-numpy.
set -euo pipefail
work=${1:?usage: make_demo_model.sh WORK_DIR [stage-1 train.py flags...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
model="$repo/models/demo"
py=${PYTHON:-python3}
stage2=${STAGE2_FLAGS:---lr 1e-3 --warmup 10 --steps 1000 --time-budget-s 2400 --pools plain=0.45,famous=0.15,chat=0.4 --seed 1235}
mkdir -p "$work"
cd "$here"
$py prepare.py --work-dir "$work" --model-dir "$model"
$py train.py --work-dir "$work" --model-dir "$model" "$@" | tee -a "$work/train.out"
cp "$work/checkpoint.pt" "$work/stage1.pt"
# shellcheck disable=SC2086
$py train.py --work-dir "$work" --model-dir "$model" --init-from "$work/stage1.pt" $stage2 | tee -a "$work/train.out"
$py export.py --work-dir "$work" --model-dir "$model"
$py check_export.py --work-dir "$work" --model-dir "$model" --dsserve "$repo/build/dsserve"
$py held_back_prompts.py --work-dir "$work" --model-dir "$model" --output held_back_prompts.jsonl --sharegpt-output held_back_sharegpt.json
