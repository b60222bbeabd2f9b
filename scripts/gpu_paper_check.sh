#!/usr/bin/env bash
# The paper preset on one DCASE-size machine type, end to end, on one GPU, time-boxed.
#
#   bash scripts/gpu_paper_check.sh OUT_DIR
#
# 1. builds a DCASE-size synthetic machine type (fan: 3 sections x (990 source + 10 target)
#    training clips, 200 test clips per section) and its feature cache;
# 2. runs benchmarks/bench_gpu.py (host vs device-resident step, fp32 vs bf16; all channels-last);
# 3. runs `dgmix run --preset paper --methods dgmix` on it: 100 pre-training + 20 fine-tuning
#    epochs, then scoring (training data on the device, as always on CUDA); with bf16 pre-training
#    and CUDA-graphed fine-tuning where step 2 measured them faster than fp32 / eager on the
#    device path (KEEP=0 runs the preset as it is);
# 4. writes every number into OUT_DIR (at most 8 files: gpu.txt, data.txt, bench_gpu.txt,
#    bench_gpu.json, run.txt, results.md, log_pretrain.jsonl, log_finetune.jsonl).
#
# The whole script stops after LIMIT_S seconds (default 540 = 9 minutes) so that a rerun still
# fits in a 15-minute GPU loan; what finished by then is in OUT_DIR. Dry run at tiny size on a CPU:
#   DEVICE=cpu SOURCE=6 TARGET=2 TEST=2 PRESET=tiny BENCH_ARGS="--device cpu --clips 6 --batch 16 \
#     --steps 1 --rounds 1 --warmup 1" bash scripts/gpu_paper_check.sh /tmp/check
# Missing Python packages (soundfile) travel as wheels in .whl/ (see .library/device/README.md).
set -uo pipefail
OUT=${1:?usage: gpu_paper_check.sh OUT_DIR}
LIMIT_S=${LIMIT_S:-540}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-paper}
SOURCE=${SOURCE:-990}
TARGET=${TARGET:-10}
TEST=${TEST:-50}                 # per section and group: 4 x 50 = 200 test clips per section
WORKERS=${WORKERS:-16}
BENCH_ARGS=${BENCH_ARGS:-}
mkdir -p "$OUT"
W=${WORK:-/tmp/dgmix_paper_check}
rm -rf "$W" && mkdir -p "$W"
. scripts/gpu_env.sh
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU"
  python3 -c "import torch, os; print('torch', torch.__version__, 'cpus', os.cpu_count())"; } > "$OUT/gpu.txt"

python3 -m dgmix synth "$W/data" --machines fan --train-source "$SOURCE" --train-target "$TARGET" \
  --test-per-group "$TEST" --workers "$WORKERS" --no-progress > "$OUT/data.txt" 2>&1
python3 -m dgmix features "$W/data/dev_data" --cache "$W/cache" --workers "$WORKERS" --no-progress >> "$OUT/data.txt" 2>&1
echo "data + features: $((SECONDS - T0)) s" >> "$OUT/data.txt"

timeout -k 5 "$(( $(left) < 120 ? $(left) : 120 ))" python3 benchmarks/bench_gpu.py $BENCH_ARGS \
  --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.txt" 2>&1
echo "benchmark done at $((SECONDS - T0)) s" >> "$OUT/data.txt"

# keep what won in the benchmark just run: bf16 for pre-training and CUDA graphs (forward or step) for fine-tuning,
# each only where its row beat the fp32 eager row of the device path (KEEP=0: the preset as is)
python3 - "$OUT/bench_gpu.json" "$W/speed.yaml" "${KEEP:-1}" >> "$OUT/data.txt" 2>&1 <<'PY'
import json, sys
rows = {}
try:
    rows = {r["setting"]: r["train_windows_per_s"] for r in json.load(open(sys.argv[1]))["rows"]}
except (OSError, ValueError, KeyError):
    pass
keep = sys.argv[3] == "1"
won = lambda a, b: keep and a in rows and b in rows and rows[a] > rows[b]
pre = won("device-bf16", "device-fp32")
# finetune.cuda_graphs: the fastest of none / forward / step (none unless it beat the eager row)
modes = {"forward": "ft-device-graphs", "step": "ft-device-step"}
graphs = max((m for m in modes if won(modes[m], "ft-device-fp32")), key=lambda m: rows[modes[m]], default="none")
with open(sys.argv[2], "w") as f:
    f.write(f"pretrain:\n  amp: {str(pre).lower()}\nfinetune:\n  cuda_graphs: {graphs}\n")
print(f"e2e settings kept from the benchmark: pretrain bf16={pre}, finetune cuda_graphs={graphs}")
PY

T1=$SECONDS
timeout -k 10 "$(left)" python3 -m dgmix run --data "$W/data/dev_data" --preset "$PRESET" --methods dgmix \
  --config "$W/speed.yaml" --device "$DEVICE" --cache "$W/cache" --out "$W/run" --no-paper-reference \
  --no-progress > "$OUT/run.txt" 2>&1
rc=$?
echo "dgmix run: exit $rc after $((SECONDS - T1)) s; script total $((SECONDS - T0)) s (limit $LIMIT_S s)" | tee -a "$OUT/run.txt"
cp "$W/run/results.md" "$OUT/results.md" 2>/dev/null
cp "$W/run/dgmix/fan/pretrain/log.jsonl" "$OUT/log_pretrain.jsonl" 2>/dev/null
cp "$W/run/dgmix/fan/finetune/log.jsonl" "$OUT/log_finetune.jsonl" 2>/dev/null
exit 0
