"""Do the conformal thresholds hold their false-alarm rate? (docs/results.md, "Calibrated alarms")

For each seed: ``dgmix run`` (the shipped path, ``--preset cpu``) on the data, then for every
method, machine type and section the split-conformal threshold for each rate A
(:func:`dgmix.scoring.conformal.conformal_threshold` on the detector's own calibration scores, the
out-of-fold scores of the section's normal training clips), and the share of the section's
*normal test clips* above it, per domain. The gamma rule of the official baseline (the detector's
thresholds without ``--false-alarm-rate``, :func:`dgmix.scoring.fit_gamma_threshold` on the same
calibration scores) is measured beside it, and so is the bare gamma fit without that rule's
goodness-of-fit check (``gamma, no check``). Normal test clips are only counted, never used to set
anything.

Usage::

    python benchmarks/false_alarms.py run --out OUT [--synth-set bench] [--data DIR] [--seeds 0,1,2]
        [--methods logmel,random]
    python benchmarks/false_alarms.py measure OUT      # again, from the run folders already in OUT
    python benchmarks/false_alarms.py table OUT/false_alarms.json [more.json ...]

With ``--synth-set``, each seed generates its own synthetic set (``dgmix synth --set NAME --seed S``),
so the rate is averaged over calibration sets, as the guarantee is; with ``--data`` the clips are
fixed and the seed only changes the methods' own randomness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.stats

from dgmix.scoring import fit_gamma_threshold
from dgmix.scoring.conformal import conformal_threshold
from dgmix.scoring.csvio import find_score_files, read_scores
from dgmix.scoring.detector import Detector

RATES = (0.01, 0.05, 0.1)
DOMAINS = ("source", "target")


def _dgmix(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dgmix", *args], check=True, stdout=subprocess.DEVNULL)


def _domain_and_label(name: str) -> tuple[str, str]:
    """(domain, label) of a development-set test clip name ``section_XX_<domain>_test_<label>_...``."""
    parts = name.split("_")
    return parts[2], parts[4]


def measure_run(run: Path, methods: list[str]) -> list[dict]:
    """One row per (method, machine, section, domain): normal test clips, their false alarms at
    each rate and under the gamma rule, and the calibration size."""
    rows = []
    for method in methods:
        for machine, section, path, _ in find_score_files(run / method / "scores"):
            det = Detector.load(run / method / machine / "detector.pt")
            s = det.section_names.index(section)
            cal = det.calibration_scores()[s]
            names, scores = read_scores(path)
            for domain in DOMAINS:
                normal = np.array([sc for n, sc in zip(names, scores) if _domain_and_label(n) == (domain, "normal")])
                if normal.size == 0:
                    continue
                shape, loc, scale = scipy.stats.gamma.fit(cal)
                bare = scipy.stats.gamma.ppf(0.9, shape, loc, scale)
                row = {"method": method, "machine": machine, "section": section, "domain": domain,
                       "n_calibration": int(cal.size), "n_normal": int(normal.size),
                       "gamma": int((normal > fit_gamma_threshold(cal, 0.9)).sum()),
                       "gamma, no check": int((normal > bare).sum())}
                for a in RATES:
                    fit = conformal_threshold(cal, a)
                    row[f"A={a}"] = int((normal > fit.threshold).sum())
                    row[f"A={a} guaranteed"] = fit.achieved
                rows.append(row)
    return rows


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / "false_alarms.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {"runs": {}}
    config = out / "no_report.yaml"
    config.write_text("report:\n  enabled: false\n")
    for seed in [int(s) for s in args.seeds.split(",")]:
        key = f"seed{seed}"
        if key in result["runs"]:
            continue
        if args.synth_set:
            data = out / f"{args.synth_set}_seed{seed}"
            if not (data / "dev_data").is_dir():
                _dgmix("synth", str(data), "--set", args.synth_set, "--seed", str(seed), "--no-progress")
            data = data / "dev_data"
        else:
            data = Path(args.data)
        run_dir = out / f"run_seed{seed}"
        _dgmix("run", "--data", str(data), "--methods", args.methods, "--preset", args.preset, "--seed", str(seed),
               "--out", str(run_dir), "--overwrite", "--no-paper-reference", "--config", str(config),
               "--cache", str(out / f"cache_{data.parent.name}"))
        result["runs"][key] = measure_run(run_dir, args.methods.split(","))
        result["data"] = args.label or (f"synth --set {args.synth_set}" if args.synth_set else str(args.data))
        result["preset"] = args.preset
        result_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{key}: {len(result['runs'][key])} rows", flush=True)
    print(table([result_path]))


def table(paths: list[Path]) -> str:
    """Markdown: per data set, method and domain, the false-alarm rate on normal test clips
    (pooled over sections and seeds; the range over seeds in brackets) for each rate and the gamma rule."""
    lines = ["| data | method | domain | normal test clips | calibration clips / section | "
             + " | ".join(f"A = {a}" for a in RATES) + " | gamma rule | gamma, no check |",
             "|---|---|---|---|---|" + "---|" * (len(RATES) + 2)]
    for path in paths:
        res = json.loads(Path(path).read_text())
        rows = [dict(r, seed=k) for k, rs in res["runs"].items() for r in rs]
        for method in sorted({r["method"] for r in rows}):
            for domain in DOMAINS:
                sel = [r for r in rows if r["method"] == method and r["domain"] == domain]
                if not sel:
                    continue
                cells = []
                for col in [f"A={a}" for a in RATES] + ["gamma", "gamma, no check"]:
                    per_seed = []
                    for seed in sorted({r["seed"] for r in sel}):
                        rs = [r for r in sel if r["seed"] == seed]
                        per_seed.append(sum(r[col] for r in rs) / sum(r["n_normal"] for r in rs))
                    total = sum(r[col] for r in sel) / sum(r["n_normal"] for r in sel)
                    cells.append(f"{100 * total:.1f} % [{100 * min(per_seed):.1f}-{100 * max(per_seed):.1f}]")
                n_norm = sum(r["n_normal"] for r in sel)
                n_cal = sorted({r["n_calibration"] for r in sel})
                lines.append(f"| {res['data']} | {method} | {domain} | {n_norm} | "
                             f"{'/'.join(map(str, n_cal))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def remeasure(out: Path) -> None:
    """Measure the run folders of an earlier ``run`` again (e.g. after a change of the rules)."""
    path = out / "false_alarms.json"
    result = json.loads(path.read_text())
    methods = sorted({r["method"] for rows in result["runs"].values() for r in rows})
    for key in result["runs"]:
        result["runs"][key] = measure_run(out / f"run_{key}", methods)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(table([path]))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--synth-set", default=None)
    r.add_argument("--data", default=None)
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--methods", default="logmel,random")
    r.add_argument("--preset", default="cpu")
    r.add_argument("--label", default=None, help="the data's name in the table")
    m = sub.add_parser("measure")
    m.add_argument("out")
    t = sub.add_parser("table")
    t.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        if (args.synth_set is None) == (args.data is None):
            parser.error("give exactly one of --synth-set and --data")
        run(args)
    elif args.cmd == "measure":
        remeasure(Path(args.out))
    else:
        print(table([Path(p) for p in args.paths]))


if __name__ == "__main__":
    main(sys.argv[1:])
