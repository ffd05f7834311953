#!/usr/bin/env bash
# Makes models/demo from scratch: corpus and tokenizer, training (CUDA when present, else the CPU),
# FP8 export, then the export checks against a built dsserve. Usage (from the repository root):
#   tools/demo-model/make_demo_model.sh WORK_DIR [train.py flags...]
# Needs Debian's bible-kjv (the `bible` program and its text), python3-torch and python3-numpy.
set -euo pipefail
work=${1:?usage: make_demo_model.sh WORK_DIR [train.py flags...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
model="$repo/models/demo"
mkdir -p "$work"
cd "$here"
python3 prepare.py --work-dir "$work" --model-dir "$model"
python3 train.py --work-dir "$work" --model-dir "$model" "$@" | tee -a "$work/train.out"
python3 export.py --work-dir "$work" --model-dir "$model"
python3 check_export.py --work-dir "$work" --model-dir "$model" --dsserve "$repo/build/dsserve"
