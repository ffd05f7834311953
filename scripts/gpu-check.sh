#!/usr/bin/env bash
# GPU checks of the CUDA backend in one command, for the device machine: runs every GPU test
# (tests/gpu: ops against the CPU backend, golden fixtures through CUDA, op timings) and prints a
# compact table. The device machine lacks the -dev libraries the build needs, so the build
# travels as a bundle made here:
#   scripts/gpu-check.sh --bundle [build-dir]   # here: pack test_gpu (and dsserve, bench_moe_decode),
#                                               # their libraries, the fixtures
#   scripts/gpu-check.sh [gtest args...]        # there: unpack, run, summarise
# Without a bundle it runs <build-dir>/tests/gpu/test_gpu (DSSERVE_BUILD, default build-cuda).
# Full results land in $OUT (or /tmp/dsserve-gpu-out): gpu_tests.json, gpu_tests.log.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARRY=$ROOT/.gpu-carry

if [[ "${1:-}" == "--bundle" ]]; then
  BUILD=${2:-$ROOT/build-cuda}
  FIX=${DSSERVE_FIXTURES:-$ROOT/../shared/fixtures}
  STAGE=$(mktemp -d)
  mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/fixtures" "$CARRY"
  cp "$BUILD/tests/gpu/test_gpu" "$STAGE/bin/"
  for d in "$BUILD/dsserve" "$BUILD/src/dsserve"; do [[ -x "$d" ]] && cp "$d" "$STAGE/bin/" && break; done
  for d in "$BUILD"/bench/bench_*; do [[ -x "$d" && -f "$d" ]] && cp "$d" "$STAGE/bin/"; done
  strip --strip-debug "$STAGE"/bin/*
  # Libraries the device image lacks (everything but glibc, libstdc++ and the CUDA libraries).
  for lib in $(ldd "$STAGE"/bin/* | awk '/=> \//{print $3}' | sort -u); do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl.so*|librt.so*|ld-linux*|libcublas*|libcudart*|libcuda.so*|libnccl*) ;;
      *) cp -L "$lib" "$STAGE/lib/" ;;
    esac
  done
  for m in tiny-v3-bf16 tiny-v3-fp8 tiny-v3-awq tiny-v3-int8-channel tiny-v3-int8-block deepseek-v3-tokenizer; do
    cp -r "$FIX/$m" "$STAGE/fixtures/"
  done
  tar -C "$STAGE" -cf - bin lib fixtures | xz -T2 -3 > "$CARRY/bundle.tar.xz"
  rm -rf "$STAGE"
  grep -qx '/.gpu-carry/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu-carry/' >> "$ROOT/.git/info/exclude"
  echo "bundle: $(du -h "$CARRY/bundle.tar.xz" | cut -f1) in $CARRY (run with carry: [\".gpu-carry\"])"
  exit 0
fi

OUTDIR=${OUT:-/tmp/dsserve-gpu-out}
mkdir -p "$OUTDIR"
if [[ -f "$CARRY/bundle.tar.xz" ]]; then
  RUN=/tmp/dsserve-gpu
  rm -rf "$RUN" && mkdir -p "$RUN"
  tar -C "$RUN" -xJf "$CARRY/bundle.tar.xz" 2>/dev/null ||
    python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$CARRY/bundle.tar.xz" "$RUN"
  BIN=$RUN/bin/test_gpu
  export LD_LIBRARY_PATH=$RUN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export DSSERVE_FIXTURES=${DSSERVE_FIXTURES:-$RUN/fixtures}
else
  BIN=${DSSERVE_BUILD:-$ROOT/build-cuda}/tests/gpu/test_gpu
fi
[[ -x "$BIN" ]] || { echo "gpu-check: no test binary at $BIN (build test_gpu or make a bundle)"; exit 2; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
if ldd "$BIN" | grep -q "not found"; then
  echo "gpu-check: missing libraries:"; ldd "$BIN" | grep "not found"; exit 2
fi

"$BIN" --gtest_output=json:"$OUTDIR/gpu_tests.json" "$@" > "$OUTDIR/gpu_tests.log" 2>&1
RC=$?
grep -E '^\[ (bench|stats|layout) ' "$OUTDIR/gpu_tests.log" | sed -E 's/^\[ ([a-z]+) *\] /\1: /'
python3 - "$OUTDIR/gpu_tests.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("gpu-check: no JSON results (%s); see gpu_tests.log" % e); sys.exit(0)
std = {"name", "status", "result", "timestamp", "time", "classname", "file", "line", "failures", "value_param", "type_param"}
n = {"PASS": 0, "FAIL": 0, "SKIP": 0}
print("%-58s %-5s %7s  %s" % ("test", "", "sec", "numbers"))
for suite in d.get("testsuites", []):
    for t in suite.get("testsuite", []):
        st = "FAIL" if t.get("failures") else ("SKIP" if t.get("result") == "SKIPPED" else "PASS")
        n[st] += 1
        props = ", ".join("%s=%s" % (k, v) for k, v in t.items() if k not in std)
        print("%-58s %-5s %7s  %s" % (suite["name"] + "." + t["name"], st, t.get("time", "")[:-1], props[:400]))
        for f in t.get("failures", []):
            print("      " + f.get("failure", "").replace("\n", "\n      ")[:1500])
print("gpu-check: %(PASS)d passed, %(FAIL)d failed, %(SKIP)d skipped" % n)
PY
# Optional: compute-sanitizer memcheck over a subset, e.g. DSSERVE_GPU_MEMCHECK='GpuOps.Mla*'.
if [[ -n "${DSSERVE_GPU_MEMCHECK:-}" ]] && command -v compute-sanitizer > /dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN" --gtest_filter="$DSSERVE_GPU_MEMCHECK" \
    > "$OUTDIR/memcheck.log" 2>&1
  MC=$?
  echo "memcheck ($DSSERVE_GPU_MEMCHECK): exit $MC; $(grep -E 'ERROR SUMMARY' "$OUTDIR/memcheck.log" | tail -1)"
  grep -E '^\[  (PASSED|FAILED) ' "$OUTDIR/memcheck.log" | head -5
  [[ $MC -ne 0 ]] && grep -E 'Invalid|out of bounds|Address' "$OUTDIR/memcheck.log" | head -10
fi
echo "gpu-check: test_gpu exit code $RC; log and JSON in $OUTDIR"
exit $RC
