"""The paper's schedule on one DCASE-size machine type on a GPU, end to end, in one call.

1. the step-time table (``bench_gpu.py``, its JSON kept): host / device path, fp32 / bf16, and
   ``cuda_graphs`` none / forward / step for pre-training and fine-tuning, summarised in
   ``gpu_paper.json`` as ``"cuda_graphs_ms": {stage: {mode: median step ms, or "n/a ..."}}``
   (the graph modes are n/a without CUDA, as in the dry run);
2. ``dgmix synth --set dcase2022 --machines fan`` (6,000 training and 600 test clips) and
   ``dgmix features``;
3. one ``dgmix run --preset paper --device cuda --methods M`` per method, in the order given
   (default dgmix, random, then scratch, vicreg, baseline, logmel as the budget allows), each in its
   own run folder so that a method cut by the budget loses only itself;
4. ``gpu_paper.json``: ``{"device", "date", "epochs_pretrain", "epochs_finetune",
   "minutes_per_machine_type", "machine_types_concurrent", "minutes_all_concurrent",
   "official": {method: score}, "stages": {method: run_info stages}, ...}`` and each stage's
   ``log.jsonl`` (the loss curves) under ``--out``.

``minutes_per_machine_type`` is the dgmix run (pre-training + fine-tuning + scoring, features cached).
A method still running when the budget (``--budget-s``) is spent is stopped and reported as
``null`` with its elapsed time. ``--config FILE`` passes overrides to every run (a shorter
schedule, for instance); the JSON records the epochs that ran.

The learning curve's paper-length points (``benchmarks/learning_curve.py --lengths paper``) are a
second device call; docs/results.md §10 has its command.

    python benchmarks/gpu_paper.py --out $OUT --budget-s 500                   # on the GPU machine
    python benchmarks/gpu_paper.py --out /tmp/gp --dry-run                      # CPU, tiny, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DGMIX = [sys.executable, "-m", "dgmix"]
METHODS = "dgmix,random,scratch,vicreg,baseline,logmel"
#: bench_gpu.py's settings per stage and cuda_graphs mode (device-resident data, fp32)
GRAPH_SETTINGS = {"pretrain": {"none": "device-fp32", "forward": "device-graphs", "step": "device-step"},
                  "finetune": {"none": "ft-device-fp32", "forward": "ft-device-graphs", "step": "ft-device-step"}}


def graphs_table(step_times: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Median step time (ms) per stage and ``cuda_graphs`` mode from bench_gpu.py's JSON, or why
    there is none (skipped without CUDA, failed, not measured)."""
    rows = {r["setting"]: r for r in step_times.get("rows", [])}
    why = {**step_times.get("failed", {}), **step_times.get("skipped", {})}
    return {stage: {mode: round(1e3 * rows[name]["median_step_s"], 2) if name in rows
                    else why.get(name, "not measured")
                    for mode, name in modes.items()}
            for stage, modes in GRAPH_SETTINGS.items()}


def _run(cmd: list[str], log: Path, timeout: float | None) -> tuple[float, int | None]:
    """Wall seconds and exit status (None: stopped at ``timeout``)."""
    print("$", " ".join(str(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        try:
            rc: int | None = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    return round(time.perf_counter() - t0, 1), rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="results folder (gpu_paper.json, logs)")
    ap.add_argument("--work", type=Path, default=None, help="data and runs (default OUT/work, deleted at the end)")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--budget-s", type=float, default=500.0, help="wall seconds for everything after the step table")
    ap.add_argument("--config", type=Path, default=None, help="overrides for every run (YAML/TOML)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny data and preset: checks the script")
    a = ap.parse_args()
    t_start = time.perf_counter()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (a.work or out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    import torch

    device = "cpu" if a.dry_run else "cuda"
    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)",
        "date": time.strftime("%Y-%m-%d"), "dry_run": a.dry_run, "machine_types_concurrent": 1,
        "minutes_all_concurrent": None, "official": {}, "stages": {}, "minutes": {}, "not_finished": {},
    }
    # 1. step times
    step_json = out / "step_times.json"
    bench = [sys.executable, str(HERE / "bench_gpu.py"), "--json", str(step_json)]
    if a.dry_run:
        bench += ["--device", "cpu", "--clips", "6", "--batch", "32", "--steps", "2", "--rounds", "1"]
    res["step_table_s"], rc = _run(bench, logs / "bench_gpu.log", 360)
    if rc == 0 and step_json.is_file():
        res["step_times"] = json.loads(step_json.read_text())
        res["cuda_graphs_ms"] = graphs_table(res["step_times"])
    t_budget = time.perf_counter()

    def left() -> float:
        return a.budget_s - (time.perf_counter() - t_budget)

    # 2. data
    data = work / "data"
    synth = DGMIX + ["synth", str(data), "--set", "dcase2022", "--machines", "fan", "--workers",
                     str(min(16, os.cpu_count() or 1)), "--no-progress"]
    if a.dry_run:
        synth += ["--sections", "00,01", "--train-source", "6", "--train-target", "2", "--test-per-group", "3",
                  "--duration", "3"]
    res["minutes"]["synth"] = round(_run(synth, logs / "synth.log", None)[0] / 60, 2)
    root, cache = data / "dev_data", work / "cache"
    feats = DGMIX + ["features", str(root), "--cache", str(cache), "--workers", str(min(16, os.cpu_count() or 1)),
                     "--no-progress"]
    res["minutes"]["features"] = round(_run(feats, logs / "features.log", None)[0] / 60, 2)
    # 3. one run per method
    for method in a.methods.split(","):
        if left() < 30:
            res["not_finished"][method] = "not started: budget spent"
            continue
        run_dir = work / f"run_{method}"
        cmd = DGMIX + ["run", "--data", str(root), "--cache", str(cache), "--out", str(run_dir), "--methods", method,
                       "--preset", "tiny" if a.dry_run else "paper", "--device", device, "--no-progress",
                       "--keep-checkpoints"]
        if a.config:
            cmd += ["--config", str(a.config)]
        seconds, rc = _run(cmd, logs / f"run_{method}.log", left())
        res["minutes"][method] = round(seconds / 60, 2)
        if rc != 0:
            res["official"][method] = None
            res["not_finished"][method] = "stopped by the budget" if rc is None else f"exit {rc}"
            continue
        results = json.loads((run_dir / "results.json").read_text())
        score = results.get(method, {}).get("official_score")
        res["official"][method] = None if score is None else round(100 * score, 2)
        info = json.loads((run_dir / "run_info.json").read_text())
        res["stages"][method] = info.get("stages", {})
        cfg_text = (run_dir / "config.yaml").read_text()
        res.setdefault("config_excerpt", {})[method] = [ln for ln in cfg_text.splitlines() if "epochs" in ln]
        for log in run_dir.rglob("log.jsonl"):  # loss curves of every stage
            dest = logs / "curves" / method / log.relative_to(run_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log, dest)
    if "dgmix" in res["minutes"] and res["official"].get("dgmix") is not None:
        res["minutes_per_machine_type"] = res["minutes"]["dgmix"]
    else:
        res["minutes_per_machine_type"] = None
    from dgmix.config import load_config

    preset = load_config("tiny" if a.dry_run else "paper", a.config)
    res["epochs_pretrain"], res["epochs_finetune"] = preset.pretrain.epochs, preset.finetune.epochs
    res["total_minutes"] = round((time.perf_counter() - t_start) / 60, 2)
    (out / "gpu_paper.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res.get(k) for k in ("device", "official", "minutes", "not_finished", "cuda_graphs_ms")},
                     indent=1))
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
