#!/usr/bin/env bash
# Builds the product and starts it (the README's first command).
set -eu
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" all
./build/nbl --help
