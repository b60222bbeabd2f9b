#!/usr/bin/env bash
# One command for the CPU tables of BENCHMARKS.md §4-5 (issue 11): scoring latency, the log-mel
# front end against librosa, and peak memory of pre-training a 6,000-clip machine type with the
# size of its feature cache. Run it on an otherwise idle machine:
#   bash benchmarks/cpu_tables.sh OUT_DIR
# Needs the dev extras (librosa) and GNU time (/usr/bin/time). About 6 minutes on 2 cores.
set -euo pipefail
OUT=${1:?usage: cpu_tables.sh OUT_DIR}
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$(dirname "$0")"
python bench_latency.py --rounds 40 --json "$OUT/latency.json" | tee "$OUT/latency.txt"
python bench_frontend.py --clips 40 --rounds 3 --json "$OUT/frontend.json" | tee "$OUT/frontend.txt"
# memory: 3 sections x (1,980 source + 20 target) = 6,000 training clips of one machine type
dgmix synth "$W/data" --machines fan --train-source 1980 --train-target 20 --test-per-group 1 \
  --workers 2 --no-progress | tee "$OUT/memory.txt"
/usr/bin/time -v dgmix features "$W/data/dev_data" --cache "$W/cache" --workers 2 --no-progress \
  2> "$W/features.time" | tee -a "$OUT/memory.txt"
/usr/bin/time -v dgmix pretrain --data "$W/data/dev_data" --machine fan --method dgmix --out "$W/pre" \
  --cache "$W/cache" --no-progress 2> "$W/pretrain.time" | tee -a "$OUT/memory.txt"
{
  echo "features: $(grep -E 'Maximum resident|Elapsed' "$W/features.time" | tr -s ' \t' ' ' | paste -sd';')"
  echo "pretrain (cpu preset): $(grep -E 'Maximum resident|Elapsed' "$W/pretrain.time" | tr -s ' \t' ' ' | paste -sd';')"
  echo "feature cache on disk: $(du -sh "$W/cache" | cut -f1) ($(find "$W/cache" -name '*.npy' | wc -l) files)"
} | tee -a "$OUT/memory.txt"
