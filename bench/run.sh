#!/usr/bin/env bash
# run.sh — `make bench`: every benchmark that runs on this machine, one after another (they share
# the cores, so never in parallel), each printing its own figures and ratios:
#   tokenizer throughput, CPU prompt/decode speed (and vs llama.cpp when LLAMA_BENCH names a
#   llama-bench binary), quantization sizes and times, helper-task latencies, and the wasm build in
#   headless Chromium vs native and vs wllama. The WebGPU benchmark needs a GPU: bench/gpu_device.sh.
# env: B (build dir), THREADS (2), LLAMA_BENCH (path; the comparison is skipped without it),
#      ONLY (space-separated subset of: tokenize cpu llamacpp quantize tasks wasm)
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
THREADS=${THREADS:-2}
ONLY=${ONLY:-"tokenize cpu llamacpp quantize tasks wasm"}
want() { [[ " $ONLY " == *" $1 "* ]]; }
section() { printf '\n== %s\n' "$1"; }

if want tokenize; then
  section "tokenizer: 1 MiB of mixed English, code and CJK, Qwen2.5 vocabulary"
  make -s B="$B" bench-tokenize
fi
if want cpu; then
  section "CPU: nbl bench on Qwen2.5-0.5B-Instruct shapes, $THREADS threads"
  mkdir -p "$B/bench-models"
  for t in q4_0 q8_0 q4_k_m; do
    f="$B/bench-models/qwen2.5-0.5b-$t.gguf"
    [ -f "$f" ] || "$B/nbl" synth qwen2.5-0.5b-instruct -t "$t" -o "$f" >/dev/null
    "$B/nbl" bench -m "$f" -p 128 -n 64 -t "$THREADS"
  done
fi
if want llamacpp; then
  section "CPU: nbl / llama.cpp"
  NBL="$B/nbl" MODELS="$B/bench-models" THREADS="$THREADS" bash bench/vs_llamacpp.sh "${LLAMA_BENCH:-}"
fi
if want quantize; then
  section "quantizer: sizes and times on Qwen2.5-0.5B-Instruct shapes"
  bash bench/quantize.sh "$B/nbl" "$THREADS"
fi
if want tasks; then
  section "helper tasks: latency on a random-weight Qwen2.5-0.5B-Instruct (upper bounds)"
  B="$B" bash bench/tasks.sh -t "$THREADS"
fi
if want wasm; then
  section "wasm in headless Chromium: vs native and vs wllama"
  make -s B="$B" BENCH_THREADS="$THREADS" bench-wasm
fi
