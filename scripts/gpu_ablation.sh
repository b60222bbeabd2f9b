#!/usr/bin/env bash
# The learned-path option ablation of docs/results.md §5 on one GPU machine, in one call: the
# ablation (benchmarks/ablation.py, `cpu` preset schedule, 3 seeds) on the synthetic benchmark set,
# the `best` combination chosen there by the pre-registered rule, the same cells on the real valve
# few-shot set, and `--preset paper` rows on the valve set. Everything trains on CUDA (--device
# cuda), several cells at a time; the detectors embed and score on the CPU.
#
#   bash scripts/gpu_ablation.sh OUT_DIR [VALVE_DIR]
#
# VALVE_DIR: a DCASE-style valve folder (make_valve_fewshot.py); FLAC clips are decoded to WAV
# first. Missing Python packages travel as wheels in .whl/. Each phase has its own time limit so
# that the earlier phases' results survive a slow later one; results go to OUT_DIR (7 files: phases.txt,
# abl_*.log, abl_*.tar.gz with every cell.json, paper_valve.txt, ablation.md).
set -uo pipefail
OUT=${1:?usage: gpu_ablation.sh OUT_DIR [VALVE_DIR]}
VALVE_IN=${2:-}
JOBS=${JOBS:-12}
THREADS=${THREADS:-1}
SEEDS=${SEEDS:-0,1,2}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-cpu}            # the ablation's schedule (the --preset paper rows are separate)
SYNTH_ARGS=${SYNTH_ARGS:-}       # e.g. a smaller set for a dry run on CPU
TS=${TIME_SCALE_PCT:-100}        # scales every phase's time limit (a dry run uses less)
lim() { echo $(( $1 * TS / 100 )); }
mkdir -p "$OUT"
W=/tmp/dgmix_gpu
mkdir -p "$W"
if ! python3 -c "import soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
DG="python3 -m dgmix"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, os; print('torch', torch.__version__, 'cpus', os.cpu_count())"; } | tee "$OUT/phases.txt"
T0=$SECONDS
stamp() { echo "[$((SECONDS - T0)) s] $*" | tee -a "$OUT/phases.txt"; }

stamp "synthetic benchmark set"
$DG synth "$W/bench" --set bench $SYNTH_ARGS --workers 16 --no-progress | tee -a "$OUT/phases.txt"
if [ -n "$VALVE_IN" ]; then
  stamp "valve set"
  python3 - "$VALVE_IN" "$W/valve" <<'EOF'
import pathlib, shutil, sys
import soundfile as sf
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for p in src.rglob("*"):
    if p.is_file():
        q = dst / p.relative_to(src)
        q.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".flac":
            data, sr = sf.read(str(p), dtype="int16")
            sf.write(str(q.with_suffix(".wav")), data, sr, subtype="PCM_16")
        else:
            shutil.copy(p, q)
EOF
fi

pack() { tar czf "$OUT/$1.tar.gz" -C "$W" --exclude=cache --exclude=run "$1" 2>/dev/null; }
ABL="python3 benchmarks/ablation.py"
stamp "bench: options"
timeout -k 10 $(lim 210) $ABL run --data "$W/bench/dev_data" --out "$W/abl_bench" --phase options --seeds "$SEEDS" \
  --jobs "$JOBS" --threads "$THREADS" --device "$DEVICE" --preset "$PRESET" | tee "$OUT/abl_bench.log"
stamp "bench: best"
timeout -k 10 $(lim 50) $ABL run --data "$W/bench/dev_data" --out "$W/abl_bench" --phase best --seeds "$SEEDS" \
  --jobs "$JOBS" --threads "$THREADS" --device "$DEVICE" --preset "$PRESET" | tee -a "$OUT/abl_bench.log"
pack abl_bench
if [ -n "$VALVE_IN" ]; then
  stamp "valve: options + best (chosen on bench)"
  timeout -k 10 $(lim 130) $ABL run --data "$W/valve" --out "$W/abl_valve" --phase all --best-from "$W/abl_bench" \
    --seeds "$SEEDS" --jobs "$JOBS" --threads "$THREADS" --device "$DEVICE" --preset "$PRESET" | tee "$OUT/abl_valve.log"
  pack abl_valve
  stamp "valve: --preset paper, seed 0"
  # one section: the section classifier would have one class, so fine-tuning classifies section x
  # attribute (finetune.classes: auto), as configs/valve-fewshot.yaml does; all else is the paper
  printf 'finetune:\n  classes: auto\n' > "$W/paper_valve.yaml"
  timeout -k 10 $(lim 100) $DG run --data "$W/valve" --preset paper --config "$W/paper_valve.yaml" --methods dgmix,scratch --device "$DEVICE" --seed 0 \
    --out "$W/paper_valve" --no-paper-reference --no-progress > "$OUT/paper_valve.txt" 2>&1
fi
$ABL table "$W/abl_bench" $([ -n "$VALVE_IN" ] && echo "$W/abl_valve") --md "$OUT/ablation.md" > /dev/null
stamp "done"
