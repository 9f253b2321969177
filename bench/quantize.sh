#!/usr/bin/env bash
# Quantization benchmark: file size and time for each type and mix on a model with
# Qwen2.5-0.5B-Instruct's exact shapes (random weights; quantizing costs the same per row).
# Usage: bench/quantize.sh [NBL_BINARY] [THREADS]
set -eu
nbl=${1:-build/nbl}
threads=${2:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$nbl" synth qwen2.5-0.5b-instruct -t f16 -o "$tmp/f16.gguf" 2>/dev/null
src_mib=$(( $(stat -c %s "$tmp/f16.gguf") / 1048576 ))
printf '%-10s %10s %8s %10s\n' type "size MiB" "vs f16" "seconds"
for t in q8_0 q6_k q5_k_m q5_0 q5_1 q4_k_m q4-mixed q4_0 q4_1 iq4_nl q3_k_m q2_k; do
  start=$(date +%s.%N)
  "$nbl" quantize "$tmp/f16.gguf" "$tmp/out.gguf" --type "$t" --threads "$threads" -q 2>/dev/null
  end=$(date +%s.%N)
  size=$(stat -c %s "$tmp/out.gguf")
  awk -v t="$t" -v s="$size" -v a="$start" -v b="$end" -v f="$src_mib" \
    'BEGIN { printf "%-10s %10.1f %8.3f %10.2f\n", t, s / 1048576, s / 1048576 / f, b - a }'
done
echo "source: f16, $src_mib MiB, $threads threads"
