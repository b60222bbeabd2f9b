#!/usr/bin/env bash
# Paper preset (SPEC §4: batch 1024, LARS lr 0.8, wd 1e-4, fp32) on one GPU, one machine type of a
# DCASE-sized synthetic set (3 sections x (990 source + 10 target) training clips = 96,000 windows
# per epoch), time-boxed with --stop-after-epoch; then one bf16-autocast + channels-last epoch for
# comparison. Writes logs and a summary to $OUT (or ./gpu_out). Needs soundfile (carry wheels in
# .wheels/ when the machine lacks it).
set -euo pipefail
OUT=${OUT:-gpu_out}
EPOCHS=${EPOCHS:-2}
mkdir -p "$OUT"
if ! python3 -c "import soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-deps --no-index .wheels/*.whl
fi
export PYTHONPATH=$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
D=/tmp/dgmix_gpu_data
python3 -m dgmix synth "$D" --machines fan --train-source 990 --train-target 10 --test-per-group 50 \
  --workers 16 --no-progress | tee "$OUT/synth.txt"
/usr/bin/time -v python3 -m dgmix features "$D/dev_data" --cache /tmp/dgmix_cache --workers 16 --no-progress \
  2> "$OUT/features_time.txt" | tail -3
python3 -m dgmix pretrain --data "$D/dev_data" --machine fan --method dgmix --preset paper \
  --out /tmp/run_fp32 --cache /tmp/dgmix_cache --stop-after-epoch "$EPOCHS" --no-progress | tee "$OUT/pretrain_fp32.txt"
cp /tmp/run_fp32/log.jsonl "$OUT/log_fp32.jsonl"
printf 'pretrain:\n  amp: true\n  channels_last: true\n' > /tmp/amp.yaml
python3 -m dgmix pretrain --data "$D/dev_data" --machine fan --method dgmix --preset paper --config /tmp/amp.yaml \
  --out /tmp/run_amp --cache /tmp/dgmix_cache --stop-after-epoch 1 --no-progress | tee "$OUT/pretrain_amp.txt"
cp /tmp/run_amp/log.jsonl "$OUT/log_amp.jsonl"
if [ -f benchmarks/bench_pretrain.py ]; then
  timeout 180 python3 benchmarks/bench_pretrain.py --device cuda --amp --batch 1024 --json "$OUT/bench_cuda.json" \
    > "$OUT/bench_cuda.txt" 2>&1 || echo "benchmark failed (see bench_cuda.txt)"
fi
