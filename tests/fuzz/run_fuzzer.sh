#!/usr/bin/env bash
# Runs one libFuzzer fuzzer as a test: first every input that ever made it fail
# (tests/fuzz/regressions/NAME, each run once), then fuzzing for SECONDS (DSSERVE_FUZZ_SECONDS
# overrides) from the seed corpus (tests/fuzz/corpus/NAME). New corpus entries go to WORK, not to
# the source tree; a failure leaves its input in WORK/artifacts: copy it to the regressions folder
# with the fix.
# Usage: run_fuzzer.sh FUZZER NAME FUZZ_SOURCE_DIR WORK SECONDS
set -euo pipefail
bin=$1 name=$2 src=$3 work=$4 seconds=${DSSERVE_FUZZ_SECONDS:-$5}
[ -x "$bin" ] || { echo "run_fuzzer: $bin was not built"; exit 1; }
mkdir -p "$work/corpus" "$work/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
shopt -s nullglob
regressions=("$src/regressions/$name"/*)
if ((${#regressions[@]})); then
  echo "run_fuzzer: $name: replaying ${#regressions[@]} regression input(s)"
  "$bin" -rss_limit_mb=2048 -timeout=20 "${regressions[@]}"
fi
echo "run_fuzzer: $name: fuzzing for $seconds s from $(ls "$src/corpus/$name" | wc -l) seed(s)"
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "$src/corpus/$name"
