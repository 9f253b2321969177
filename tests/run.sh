#!/usr/bin/env bash
# Runs every test binary (plain, then under ASan+UBSan) and the JS tests, sums their
# "N passed, N failed" lines and ends with the total. Exit status is non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0; broken=(); why=()
run_one() { # name, command...
  local name=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  local line
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -n 30
    echo "!! $name: no result line (exit $rc)"; fail=$((fail+1)); broken+=("$name"); return
  fi
  local p f; p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  pass=$((pass+p)); fail=$((fail+f))
  if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v '^ok ' | tail -n 40
    broken+=("$name"); [ "$f" -eq 0 ] && fail=$((fail+1))
    # Repeated at the end, where a log cut to its tail still shows why.
    why+=("$name: $(printf '%s\n' "$out" | grep -E -m 6 "^not ok|^ +error: |FAIL|Assertion|ERROR" | tr '\n' ' ' | cut -c1-600)")
  fi
  printf '%-40s %s\n' "$name" "$line"
}
B=${B:-build}
for t in "$B"/tests/test_*; do run_one "$(basename "$t")" "$t"; done
# The same kernel tests on the WebAssembly SIMD128 table.
[ -f "$B/wasm/tests/test_kernels.js" ] && run_one "wasm/test_kernels" node "$B/wasm/tests/test_kernels.js"
# The relaxed-SIMD kernels with the stand-in's exact body (the instruction itself runs in Chromium:
# tests/js/wasm-relaxed.test.mjs).
[ -f "$B/wasm/tests/test_kernels_rs.js" ] && run_one "wasm/test_kernels_rs" node "$B/wasm/tests/test_kernels_rs.js"
# The AArch64 builds under emulation (-cpu max: the dot-product and f16 extensions are there).
for t in "$B"/arm/*/test_*; do
  [ -f "$t" ] && run_one "arm/$(basename "$(dirname "$t")")/$(basename "$t")" qemu-aarch64 -cpu max "$t"
done
if [ -z "${NBL_SKIP_ASAN:-}" ]; then
  for t in "$B"/asan/tests/test_*; do
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_one "asan/$(basename "$t")" "$t"
  done
fi
if [ -z "${NBL_SKIP_JS:-}" ] && [ -d tests/js ] && ls tests/js/*.test.mjs >/dev/null 2>&1; then
  for t in tests/js/*.test.mjs; do run_one "js/$(basename "$t")" node tests/js/run-one.mjs "$t"; done
fi
for w in "${why[@]}"; do echo "why: $w"; done
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
