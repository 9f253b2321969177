#!/usr/bin/env bash
# vs_llamacpp.sh — CPU speed against llama.cpp on the same GGUF files: synthetic Qwen2.5-0.5B
# (real shapes and type mixes, random weights) in Q4_0, Q8_0 and Q4_K_M, pp and tg measured by
# `nbl bench` and `llama-bench` alike, back to back, printing both t/s and the ratio nbl/llama.cpp.
#
# usage: bench/vs_llamacpp.sh [PATH/TO/llama-bench]     (skipped when no llama-bench is given)
# env:   NBL (default build/nbl)  MODELS (default build/bench-models)  THREADS (2)  REPS (5)
#        P (128)  N (64)  TYPES ("q4_0 q8_0 q4_k_m")  PIN (e.g. "taskset -c 0,1", default none)
set -euo pipefail
cd "$(dirname "$0")/.."
LB=${1:-}
if [ -z "$LB" ]; then
  echo "vs_llamacpp: skipped (give the path to a llama-bench binary)"
  exit 0
fi
[ -x "$LB" ] || { echo "vs_llamacpp: $LB is not executable" >&2; exit 1; }
NBL=${NBL:-build/nbl}
MODELS=${MODELS:-build/bench-models}
THREADS=${THREADS:-2}
REPS=${REPS:-5}
P=${P:-128}
N=${N:-64}
TYPES=${TYPES:-"q4_0 q8_0 q4_k_m"}
PIN=${PIN:-}
[ -x "$NBL" ] || { echo "vs_llamacpp: $NBL not built (run make)" >&2; exit 1; }
mkdir -p "$MODELS"

# t/s of test $2 (pp$P or tg$N) from `nbl bench` output: the "mean ± sd" column.
nbl_ts() { awk -F'|' -v t="$2" '$7 ~ "^ *"t" *$" { split($8, a, " "); print a[1] }' <<<"$1"; }
# t/s of a llama-bench CSV run: avg_ts of the row with n_prompt/n_gen as asked.
llama_ts() {
  awk -F',' -v np="$2" -v ng="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); c[$i] = i }; next }
    { gsub(/"/, "") ; if ($c["n_prompt"] == np && $c["n_gen"] == ng) print $c["avg_ts"] }' <<<"$1"
}

printf '| model | test | nbl t/s | llama.cpp t/s | nbl / llama.cpp |\n| --- | --- | ---: | ---: | ---: |\n'
for t in $TYPES; do
  f="$MODELS/qwen2.5-0.5b-$t.gguf"
  [ -f "$f" ] || "$NBL" synth qwen2.5-0.5b-instruct -t "$t" -o "$f" >/dev/null 2>&1
  ours=$($PIN "$NBL" bench -m "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS")
  theirs=$($PIN "$LB" -m "$f" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o csv 2>/dev/null)
  for test in "pp$P" "tg$N"; do
    a=$(nbl_ts "$ours" "$test")
    if [ "${test:0:2}" = pp ]; then b=$(llama_ts "$theirs" "$P" 0); else b=$(llama_ts "$theirs" 0 "$N"); fi
    r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '| qwen2.5-0.5b %s | %s | %.2f | %.2f | %s |\n' "$t" "$test" "$a" "${b:-0}" "$r"
  done
done
