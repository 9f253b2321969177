#!/usr/bin/env bash
# Builds the product and starts it (the README's first command): the native library and `nbl`,
# the WebAssembly builds the page runs, then the page itself at http://127.0.0.1:8080/ (set PORT
# or HOST to change), served cross-origin isolated so the threaded build can run.
set -eu
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" all
make -j"$(nproc)" wasm
echo "nbl (command line): ./build/nbl --help"
exec node scripts/serve.mjs --port "${PORT:-8080}" --host "${HOST:-127.0.0.1}"
