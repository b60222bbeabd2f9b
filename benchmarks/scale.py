"""Cost of the pipeline at DCASE 2022 size on this machine: per stage wall time, peak RSS and disk.

Two parts, each through the real CLI (one child process per command, so each command's peak RSS
is its own, read with ``os.wait4``):

* **growth**: one machine type (fan, sections 00-05, 10 target training clips per section, the
  DCASE 2022 test clips of sections 00-02) at about 1,000, 3,000 and 6,000 training clips:
  ``dgmix synth``, ``dgmix features``, ``dgmix run --methods logmel`` and
  ``dgmix run --methods dgmix,random --preset cpu``. Each size has its own data and feature cache,
  so nothing is shared between sizes. The table shows every stage's cost at each size and its
  growth exponent ``log(t_6000 / t_1000) / log(n_6000 / n_1000)`` (1 = linear).
* **seven**: ``dgmix synth --set dcase2022`` (all seven machine types, about 46,000 clips),
  ``dgmix features``, ``dgmix run --methods logmel``, end to end.

Inside a run, the stages come from the run's ``run_info.json`` (``stages``: features (reading the
cache), train, detector (the label-free scoring choice and the back-end fit), score, outputs,
report) and, for ``logmel``, ``selection.json`` (the part of ``detector`` spent choosing).

    python benchmarks/scale.py --root /work/scale --json benchmarks/results/scale.json
    python benchmarks/scale.py --root /work/scale --parts growth --sizes 1000,3000   # quicker

Nothing is reused from an earlier call: ``--root`` must not exist yet (or give ``--overwrite``).
Results go into BENCHMARKS.md by hand, with the date and the load average printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DGMIX = [sys.executable, "-m", "dgmix"]
SECTIONS = 6
TARGET_PER_SECTION = 10


def du(path: Path) -> int:
    """Bytes under ``path`` (0 if missing)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def timed(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` as a child; its wall time, peak RSS and exit status. Output goes to ``log``."""
    print("$", " ".join(cmd[2:] if cmd[:2] == DGMIX[:2] else cmd), flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd}: exit {proc.returncode}; see {log}")
    return {"seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1e3, 1)}


def run_stages(run_dir: Path) -> dict[str, dict[str, float]]:
    """Sum each stage over machine types and methods: ``{stage: {seconds, peak_rss_mb}}``."""
    info = json.loads((run_dir / "run_info.json").read_text())
    out: dict[str, dict[str, float]] = {}

    def add(stage: str, rec: dict[str, float]) -> None:
        cur = out.setdefault(stage, {"seconds": 0.0, "peak_rss_mb": 0.0})
        cur["seconds"] = round(cur["seconds"] + rec["seconds"], 3)
        cur["peak_rss_mb"] = max(cur["peak_rss_mb"], rec["peak_rss_mb"] or 0.0)

    for machine, recs in info["stages"]["machines"].items():
        add("load features", recs["features"])
        for method, stages in recs.items():
            if method == "features":
                continue
            for stage, rec in stages.items():
                add(f"{method}: {stage}", rec)
            sel = run_dir / method / machine / "selection.json"
            if sel.is_file():
                add(f"{method}: selection (in detector)",
                    {"seconds": json.loads(sel.read_text())["seconds"], "peak_rss_mb": 0.0})
    if "report" in info["stages"]:
        add("report", info["stages"]["report"])
    return out


def one_size(root: Path, logs: Path, name: str, synth_args: list[str], runs: list[tuple[str, list[str]]],
             workers: int) -> dict[str, Any]:
    """synth, features, then each run, in fresh folders under ``root/name``."""
    base = root / name
    data, cache = base / "data", base / "cache"
    rec: dict[str, Any] = {"commands": {}}
    rec["commands"]["synth"] = timed(DGMIX + ["synth", str(data), *synth_args, "--workers", str(workers),
                                              "--no-progress"], logs / f"{name}_synth.log")
    root_dev = data / "dev_data"
    rec["n_train"] = sum(1 for _ in root_dev.glob("*/train/*.wav"))
    rec["n_test"] = sum(1 for _ in root_dev.glob("*/test/*.wav"))
    rec["disk_mb"] = {"wav": round(du(data) / 1e6, 1)}
    rec["commands"]["features"] = timed(DGMIX + ["features", str(root_dev), "--cache", str(cache),
                                                 "--workers", str(workers), "--no-progress"],
                                        logs / f"{name}_features.log")
    rec["disk_mb"]["feature cache"] = round(du(cache) / 1e6, 1)
    rec["runs"] = {}
    for label, extra in runs:
        out = base / f"run_{label}"
        cmd = DGMIX + ["run", "--data", str(root_dev), "--cache", str(cache), "--out", str(out),
                       "--no-progress", *extra]
        r = timed(cmd, logs / f"{name}_run_{label}.log")
        r["stages"] = run_stages(out)
        r["disk_mb"] = round(du(out) / 1e6, 1)
        results = json.loads((out / "results.json").read_text())
        r["official_score"] = {m: round(100 * v["official_score"], 2) for m, v in results.items()
                               if v.get("official_score") is not None}
        rec["runs"][label] = r
    print(json.dumps({k: rec[k] for k in ("n_train", "n_test", "commands", "disk_mb")}), flush=True)
    return rec


RUNS = [("logmel", ["--methods", "logmel"]), ("dgmix_random_cpu", ["--methods", "dgmix,random", "--preset", "cpu"])]


def growth(root: Path, logs: Path, sizes: list[int], workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        source = max(1, round(n / SECTIONS) - TARGET_PER_SECTION)
        out[str(n)] = one_size(root, logs, f"fan_{n}", ["--set", "dcase2022", "--machines", "fan",
                                                         "--train-source", str(source)], RUNS, workers)
    return out


def exponents(points: dict[str, Any]) -> dict[str, float]:
    """Growth exponent of every command and stage between the smallest and the largest size."""
    keys = sorted(points, key=int)
    if len(keys) < 2:
        return {}
    lo, hi = points[keys[0]], points[keys[-1]]
    ratio = math.log(hi["n_train"] / lo["n_train"])

    def exp(a: float, b: float) -> float:
        return round(math.log(max(b, 1e-3) / max(a, 1e-3)) / ratio, 2)

    res = {f"command {k}": exp(lo["commands"][k]["seconds"], hi["commands"][k]["seconds"]) for k in lo["commands"]}
    for label, run in lo["runs"].items():
        res[f"run {label}"] = exp(run["seconds"], hi["runs"][label]["seconds"])
        for stage, r in run["stages"].items():
            if r["seconds"] >= 0.5:  # below that the ratio is timer noise
                res[f"{label} / {stage}"] = exp(r["seconds"], hi["runs"][label]["stages"][stage]["seconds"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="work folder for data, caches and runs")
    ap.add_argument("--parts", default="growth,seven", help="growth, seven or both (comma list)")
    ap.add_argument("--sizes", default="1000,3000,6000", help="training clips of the growth points")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--overwrite", action="store_true", help="delete --root first")
    ap.add_argument("--keep", action="store_true", help="keep the data and runs (default: delete each part's)")
    a = ap.parse_args()
    if a.root.exists():
        if not a.overwrite:
            raise SystemExit(f"{a.root}: exists; give --overwrite to delete it first")
        shutil.rmtree(a.root)
    logs = a.root / "logs"
    logs.mkdir(parents=True)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "cpus": os.cpu_count(),
                           "python": platform.python_version(), "load_start": os.getloadavg()}
    parts = a.parts.split(",")
    if "growth" in parts:
        res["growth"] = growth(a.root, logs, [int(x) for x in a.sizes.split(",")], a.workers)
        res["growth_exponents"] = exponents(res["growth"])
        if not a.keep:
            for n in a.sizes.split(","):
                shutil.rmtree(a.root / f"fan_{n}", ignore_errors=True)
    if "seven" in parts:
        res["seven"] = one_size(a.root, logs, "seven", ["--set", "dcase2022"], RUNS[:1], a.workers)
        cmds = res["seven"]["commands"]
        res["seven"]["end_to_end_s"] = round(cmds["features"]["seconds"] + res["seven"]["runs"]["logmel"]["seconds"], 1)
        res["seven"]["end_to_end_with_synth_s"] = round(res["seven"]["end_to_end_s"] + cmds["synth"]["seconds"], 1)
        if not a.keep:
            shutil.rmtree(a.root / "seven", ignore_errors=True)
    res["load_end"] = os.getloadavg()
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
