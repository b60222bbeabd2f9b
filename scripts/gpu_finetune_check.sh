#!/usr/bin/env bash
# Issue 11: CUDA graphs for the fine-tuning step (finetune.cuda_graphs none / forward / step), measured on one
# GPU, time-boxed.
#
#   bash scripts/gpu_finetune_check.sh OUT_DIR
#
# 1. benchmarks/bench_gpu.py on the fine-tuning step only: eager against both CUDA graph modes, same init and
#    draws (its warm-up losses are the parity check);
# 2. builds the DCASE-size synthetic fan set of gpu_paper_check.sh and its feature cache;
# 3. `dgmix finetune --init scratch --preset paper`, one epoch capped at WINDOWS windows (default 19,200 =
#    300 steps of 64), with cuda_graphs none, forward and step, from the same seed, and prints the logs' last
#    rows (equal up to float rounding when the graphs are right) and wall times.
# Files in OUT_DIR: bench_ft.txt, bench_ft.json, finetune.txt. Whole script limited to LIMIT_S (default 240).
# Dry run at tiny size on a CPU (no CUDA graphs there: forward does nothing, step runs eagerly):
#   DEVICE=cpu SOURCE=6 TARGET=2 TEST=2 WINDOWS=64 BENCH_ARGS="--device cpu --clips 6 --ft-batch 8 --steps 1 \
#     --rounds 1 --warmup 2" bash scripts/gpu_finetune_check.sh /tmp/ftcheck
set -uo pipefail
OUT=${1:?usage: gpu_finetune_check.sh OUT_DIR}
LIMIT_S=${LIMIT_S:-240}
SOURCE=${SOURCE:-990}
TARGET=${TARGET:-10}
TEST=${TEST:-2}
WINDOWS=${WINDOWS:-19200}
WORKERS=${WORKERS:-16}
BENCH_ARGS=${BENCH_ARGS:-}
mkdir -p "$OUT"
W=${WORK:-/tmp/dgmix_ft_check}
rm -rf "$W" && mkdir -p "$W"
. scripts/gpu_env.sh
timeout -k 5 "$(( $(left) < 100 ? $(left) : 100 ))" python3 benchmarks/bench_gpu.py \
  --settings ft-device-fp32,ft-device-graphs,ft-device-step $BENCH_ARGS --json "$OUT/bench_ft.json" > "$OUT/bench_ft.txt" 2>&1
{
  python3 -m dgmix synth "$W/data" --machines fan --train-source "$SOURCE" --train-target "$TARGET" \
    --test-per-group "$TEST" --workers "$WORKERS" --no-progress
  python3 -m dgmix features "$W/data/dev_data" --cache "$W/cache" --workers "$WORKERS" --no-progress
  echo "data + features done at $((SECONDS - T0)) s"
  for graphs in none forward step; do
    printf 'finetune:\n  epochs: 1\n  windows_per_epoch: %s\n  cuda_graphs: %s\n' "$WINDOWS" "$graphs" > "$W/ft_$graphs.yaml"
    T1=$SECONDS
    timeout -k 5 "$(left)" python3 -m dgmix finetune --data "$W/data/dev_data" --machine fan --init scratch \
      --preset paper --config "$W/ft_$graphs.yaml" --cache "$W/cache" --out "$W/ft_$graphs" --no-progress
    echo "cuda_graphs=$graphs: exit $? after $((SECONDS - T1)) s"
    echo "last log row: $(tail -n 1 "$W/ft_$graphs/log.jsonl" 2>/dev/null)"
  done
  echo "script total $((SECONDS - T0)) s (limit $LIMIT_S s)"
} > "$OUT/finetune.txt" 2>&1
exit 0
