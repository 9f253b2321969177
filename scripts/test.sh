#!/usr/bin/env bash
# Builds and runs every test (the README's test command; also what CI runs).
set -eu
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)" all
make -j"$(nproc)" test
