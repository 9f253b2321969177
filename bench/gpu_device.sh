#!/usr/bin/env bash
# gpu_device.sh — the WebGPU benchmark on the device machine (../shared/gpu/README.md): writes
# random-weight models with Qwen2.5-0.5B-Instruct's exact shapes and types (`nbl synth`, in
# parallel), then runs bench/gpu.mjs on each through Dawn, checking greedy tokens against the CPU
# path. VARIANTS="args;args" also benchmarks the first type with those plan tunings (see
# `nbl gpu_plan`). Logs and JSON go to $OUT.
#   carry [".gpu", "<dir with a static nbl>"]; command: bash bench/gpu_device.sh DIR/nbl q4_0 q8_0 q4_k_m
set -u
nbl=$1
shift
source .gpu/enter.sh
out=${OUT:-/tmp/gpu-bench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv > "$out/gpu.txt" 2>&1
for t in "$@"; do
  ( "$nbl" synth qwen2.5-0.5b-instruct -t "$t" -o "/tmp/synth-$t.gguf" > "$out/synth_$t.log" 2>&1
    touch "/tmp/synth-$t.ready" ) &
done
bench() { # type, name, extra args...
  local t=$1 name=$2
  shift 2
  echo "== $t $name"
  timeout "${BENCH_TIMEOUT:-240}" node bench/gpu.mjs "/tmp/synth-$t.gguf" --nbl "$nbl" --json "$out/$t-$name.json" ${BENCH_ARGS:-} "$@" 2>&1 |
    tee "$out/bench_$t-$name.log"
}
for t in "$@"; do
  while [ ! -e "/tmp/synth-$t.ready" ]; do sleep 0.5; done
  bench "$t" default --check-cpu 8
done
IFS=';' read -ra vs <<< "${VARIANTS:-}"
for v in "${vs[@]}"; do
  args=()
  for a in $v; do args+=(--plan-arg "$a"); done
  bench "$1" "$(echo "$v" | tr -c 'a-z0-9' _)" --no-profile "${args[@]}"
done
