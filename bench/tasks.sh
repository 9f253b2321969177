#!/usr/bin/env bash
# Helper-task latency (and, with a real model, quality) through `nbl task_eval` on
# bench/tasks_eval.jsonl. Without a model, a random-weight model with Qwen2.5-0.5B-Instruct's
# shapes, real vocabulary and chat template is synthesized: its outputs are noise that runs to
# each task's token budget, so the latencies are upper bounds for the real model's. With a real
# model file the quality lines are meaningful too:
#   bash bench/tasks.sh [MODEL.gguf] [task_eval options, e.g. --verbose -t 4]
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
make -s B="$B" "$B/nbl"
if [ $# -gt 0 ] && [ -f "$1" ]; then
  M=$1
  shift
else
  M=$B/bench/qwen2.5-0.5b-q4_0-synth.gguf
  if [ ! -f "$M" ]; then
    mkdir -p "$(dirname "$M")"
    "$B/nbl" synth qwen2.5-0.5b-instruct -t q4_0 --vocab ../shared/fixtures/tokenizer/qwen2-vocab.gguf -o "$M"
  fi
fi
"$B/nbl" task_eval -m "$M" bench/tasks_eval.jsonl "$@"
