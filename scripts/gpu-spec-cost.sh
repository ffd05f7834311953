#!/usr/bin/env bash
# Device-machine run of the speculative-decoding cost measurement on full-width dummy layers of
# DeepSeek-V3 (configs/deepseek-v3): per-layer decode, verify (2/4/8 tokens) and draft-step times at
# batch 1 and 32, and the projected 61-layer speed-up. Uses the bundle of scripts/gpu-check.sh.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=/tmp/dsserve-gpu
rm -rf "$R" && mkdir -p "$R" && tar -C "$R" -xJf "$ROOT/.gpu-carry/bundle.tar.xz"
export LD_LIBRARY_PATH=$R/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$R/bin/dsserve" bench-speculative-cost --model-path "$ROOT/configs/deepseek-v3" --load-format dummy --device cuda \
  --layers 2 3 4 5 --batch-size 1 32 --context-tokens 1024 --repeats 20 "$@" 2>&1 | grep -v "Loading weights"
