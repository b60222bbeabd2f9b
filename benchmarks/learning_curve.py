"""Learning curve: official score against training length, per learned method, against ``random``.

A *point* is (length, method, seed): one ``dgmix run`` of one method on one data set (the
synthetic benchmark set, ``dgmix synth OUT --set bench``), scored as the run scores it (the
``official_as_run`` of :func:`ablation.run_cell`, whose cells this script reuses).

Lengths:

- ``N`` (an integer): the ``cpu`` preset as it stands (AdamW pre-training, joined views, batch 32
  in both stages) trained for N optimizer steps *per stage* (pre-training and fine-tuning each;
  ``scratch`` has fine-tuning only). The preset itself is N = 16 (2 epochs of 256 windows). Other
  lengths keep the preset's schedule shape: ``windows_per_epoch = min(16 N, 2048)`` and as many
  epochs as make N steps, half of them warm-up (the preset's 1 of 2), so only the number of steps
  changes. Each cell checks that its stages ran exactly N steps (a machine type with fewer than
  2,048 training windows would cut the epochs; the cell then fails instead of reporting a shorter
  run as N).
- ``paper``: the ``paper`` preset unchanged (LARS at batch 1024 for 100 epochs, AdamW at batch 64
  for 20 epochs, separate views: paper §3.3-3.4). On the benchmark set's machine types (6,336
  training windows each) that is 600 pre-training and 1,980 fine-tuning steps. A GPU job.

``random`` does not train: its cells (one per seed) are the control line of every length.
Cells that already have a ``cell.json`` are skipped, so an interrupted run resumes; the table is
written from whatever cells exist.

Usage::

    python benchmarks/learning_curve.py run --data BENCH/dev_data --out OUT \\
        [--lengths 16,128,1024,paper] [--methods dgmix,vicreg,scratch,random] [--seeds 0,1] \\
        [--jobs 1] [--threads 2] [--device auto] [--cache DIR]
    python benchmarks/learning_curve.py table OUT [--md FILE] [--json FILE]

docs/results.md §10 has the commands that produced the published curve and says where each point
ran.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import fill_cache, load_cells, run_jobs, script_main  # noqa: E402

#: the largest epoch (windows) the longer points use; below it, the preset's 2 epochs
MAX_EPOCH_WINDOWS = 2048
LEARNED = ("scratch", "vicreg", "dgmix")
#: training signals averaged per point (each stage's last step, over machine types and
#: seeds): the fine-tuning KL is the section classifier's loss (ln K = chance for K sections)
SIGNALS = (("finetune", "kl"), ("finetune", "embedding_std"), ("pretrain", "loss"))
CONTROL = "random"


def length_overrides(length: str) -> tuple[str, dict[str, Any]]:
    """Preset and config overrides of one length (see the module docstring)."""
    if length == "paper":
        return "paper", {}
    from dgmix.config import load_config

    steps = int(length)
    if steps < 2 or steps % 2:
        raise SystemExit(f"length {length!r}: an even number of steps >= 2, or 'paper'")
    batch = load_config("cpu").pretrain.batch_size  # the cpu preset's, in both stages
    windows = min(batch * steps // 2, MAX_EPOCH_WINDOWS)
    if (batch * steps) % windows:
        raise SystemExit(f"length {steps}: {batch * steps} windows are not a whole number of "
                         f"{windows}-window epochs")
    epochs = batch * steps // windows
    stage = {"epochs": epochs, "windows_per_epoch": windows}
    return "cpu", {"pretrain": {**stage, "warmup_epochs": epochs / 2}, "finetune": dict(stage)}


def stage_steps(cell: dict[str, Any]) -> dict[str, set[int]]:
    """The steps each stage ran, over the cell's machine types."""
    out: dict[str, set[int]] = {}
    for machine in cell["machines"].values():
        for stage, summary in machine["stages"].items():
            out.setdefault(stage, set()).add(int(summary["steps"]))
    return out


def check_length(cell: dict[str, Any]) -> None:
    """A numbered length must have run exactly that many steps in every stage it trained."""
    if cell["variant"] == "paper" or cell["method"] == CONTROL:
        return
    want = int(cell["variant"])
    for stage, steps in stage_steps(cell).items():
        if steps != {want}:
            raise SystemExit(f"{cell['method']} at length {want}, seed {cell['seed']}: {stage} ran "
                             f"{sorted(steps)} steps, not {want} (too few training windows per machine type?)")


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = []
    for seed in args.seeds:  # seed-major: a cut run has fewer seeds, not missing lengths
        for length in args.lengths:
            preset, overrides = length_overrides(length)
            for method in args.methods:
                if method == CONTROL and length != args.lengths[0]:
                    continue  # the control does not train: one cell per seed serves every length
                variant = "control" if method == CONTROL else length
                cell_dir = Path(args.out) / "cells" / variant / method / f"seed{seed}"
                if (cell_dir / "cell.json").is_file():
                    continue
                cell_dir.mkdir(parents=True, exist_ok=True)
                jobs.append({"variant": variant, "method": method, "seed": seed, "preset": preset,
                             "overrides": {} if method == CONTROL else overrides, "base": {},
                             "rescore": False, "cell_dir": str(cell_dir), "data": args.data,
                             "cache": str(args.cache), "threads": args.threads,
                             "device": args.device, "keep": False})
    return jobs


def cmd_run(args: argparse.Namespace) -> None:
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.methods = args.methods.split(",")
    args.lengths = args.lengths.split(",")
    unknown = [m for m in args.methods if m not in (*LEARNED, CONTROL)]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {[*LEARNED, CONTROL]}")
    for length in args.lengths:
        length_overrides(length)  # refuses a bad length before any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.cache = Path(args.cache) if args.cache else out / "cache"
    t0 = time.perf_counter()
    fill_cache(args.data, args.cache, workers=max(1, args.jobs * args.threads))
    print(f"features ready in {time.perf_counter() - t0:.1f} s", flush=True)
    run_jobs(plan(args), args.jobs, t0)
    for cell in load_cells(out):
        check_length(cell)


def curve(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method and length: official score (points) per seed, mean, half range, steps, seconds."""
    rows: dict[str, dict[str, Any]] = {}
    for c in cells:
        check_length(c)
        row = rows.setdefault(c["method"], {}).setdefault(c["variant"], {"seeds": {}, "seconds": [], "devices": []})
        row["devices"] = sorted({*row["devices"], c.get("device", "cpu")})
        v = c["official_as_run"]
        row["seeds"][c["seed"]] = None if v is None else round(100 * v, 2)
        row["seconds"].append(c["seconds"])
        row["steps"] = {k: sorted(v) for k, v in stage_steps(c).items()}
        for stage, term in SIGNALS:
            row.setdefault(f"{stage}_{term}", []).extend(
                m["stages"][stage]["last_terms"][term] for m in c["machines"].values()
                if term in m["stages"].get(stage, {}).get("last_terms", {}))
    for per_len in rows.values():
        for row in per_len.values():
            vals = [v for v in row["seeds"].values() if v is not None]
            row["mean"] = round(statistics.fmean(vals), 2) if vals else None
            row["half_range"] = round((max(vals) - min(vals)) / 2, 2) if vals else None
            row["seconds"] = round(statistics.fmean(row.pop("seconds")), 1)
            for stage, term in SIGNALS:
                vals = row.pop(f"{stage}_{term}")
                if vals:
                    row[f"{stage}_{term}"] = round(statistics.fmean(vals), 4)
    return rows


def _order(length: str) -> tuple[int, int]:
    return (1, 0) if length == "paper" else (0, int(length))


def cmd_table(args: argparse.Namespace) -> None:
    rows = curve(load_cells(Path(args.out)))
    lengths = sorted({ln for m, per in rows.items() if m != CONTROL for ln in per}, key=_order)
    control = rows.get(CONTROL, {}).get("control")

    def cell(row: dict[str, Any] | None) -> str:
        if row is None or row["mean"] is None:
            return "-"
        return f"{row['mean']:.2f} ± {row['half_range']:.2f} ({len(row['seeds'])})"

    head = ["steps per stage →", *[("paper preset" if ln == "paper" else ln) for ln in lengths]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(lengths)]
    for method in (*LEARNED, CONTROL):
        if method not in rows:
            continue
        per = rows[method]
        cells = [cell(control)] * len(lengths) if method == CONTROL else [cell(per.get(ln)) for ln in lengths]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if control:
        for method in LEARNED:
            if method in rows:
                lines.append(f"| {method} − random, same seeds | " + " | ".join(
                    _paired(rows[method].get(ln), control) for ln in lengths) + " |")
    lines += ["", "The last training step's signals (one batch; mean over machine types and seeds): fine-tuning KL / "
              "fine-tuning embedding std / pre-training loss", "",
              "| steps per stage → | " + " | ".join(head[1:]) + " |", "|---|" + "---:|" * len(lengths)]
    for method in LEARNED:
        if method in rows:
            lines.append(f"| {method} | " + " | ".join(_signals(rows[method].get(ln)) for ln in lengths) + " |")
    lines += ["", "Seconds per cell (mean over seeds) and where it ran: " + "; ".join(
        f"{m} " + ", ".join(f"{ln}: {rows[m][ln]['seconds']:.0f} ({'+'.join(rows[m][ln]['devices'])})"
                            for ln in (["control"] if m == CONTROL else lengths) if ln in rows[m])
        for m in (*LEARNED, CONTROL) if m in rows)]
    text = "\n".join(lines) + "\n"
    if args.md:
        Path(args.md).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


def _signals(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    return " / ".join(f"{row[k]:.3f}" if k in row else "-" for k in (f"{st}_{t}" for st, t in SIGNALS))


def _paired(row: dict[str, Any] | None, control: dict[str, Any]) -> str:
    """Mean over the seeds both have of (method - control), in points, and how many seeds."""
    if row is None:
        return "-"
    diffs = [v - control["seeds"][k] for k, v in row["seeds"].items()
             if v is not None and control["seeds"].get(k) is not None]
    return f"{statistics.fmean(diffs):+.2f} ({len(diffs)})" if diffs else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the points")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--lengths", default="16,128,1024,paper")
    r.add_argument("--methods", default="dgmix,vicreg,scratch,random")
    r.add_argument("--seeds", default="0,1")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--device", default="auto")
    r.add_argument("--cache", default=None, help="feature cache folder (default OUT/cache)")
    t = sub.add_parser("table", help="markdown table (and JSON) of an OUT's points")
    t.add_argument("out")
    t.add_argument("--md", default=None)
    t.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    {"run": cmd_run, "table": cmd_table}[args.cmd](args)
    return 0


if __name__ == "__main__":
    script_main(main)
