"""Ablation of the learned path: each option alone, then the best combination, per method and seed.

A *cell* is (variant, method, seed): one ``dgmix run`` of one method on one data set with the
variant's config overrides on top of a preset (default ``cpu``). After the run, each trained
encoder is scored again with mean and with max pooling over windows (a fresh detector per pooling,
:func:`dgmix.methods.fit_detector`: 1-NN, one bank per section, thresholds as the run fits them).
Each cell writes ``OUT/cells/<variant>/<method>/seed<k>/cell.json`` with the two official scores,
the run's own (``official_as_run``), AUC-S / AUC-T / pAUC (as run, i.e. mean pooling) and the
training-only signals (each stage's last loss terms, embedding std and relative weight change of
the encoder). Cells that already have a ``cell.json`` are skipped, so an interrupted run resumes.

The ``best`` variant is never hand-picked: ``select`` applies a rule fixed in advance to the cells
of a *selection* set (the synthetic benchmark, never the valve test labels): an option joins the
combination when its mean official-score gain over ``fix`` (over the methods it applies to, the
seeds and both poolings) is at least ``--min-gain`` points. The rule and the gains go into
``best.json``.

Usage::

    python benchmarks/ablation.py run --data DIR --out OUT [--phase options|best|all]
        [--best-from SEL_OUT] [--seeds 0,1,2] [--jobs 4] [--threads 2] [--device auto]
    python benchmarks/ablation.py select OUT [--min-gain 1.0]
    python benchmarks/ablation.py table OUT [OUT...] [--md FILE]

See docs/results.md §5 for the commands that produced the published table. That table also has
rows for options that have since been removed from the package (``before``, ``input_norm``,
``ft_scale``, ``reestimate_bn``, ``no_expander_bn_relu``, ``relu``); they cannot be rerun, and
since every learned stage now re-estimates its BN statistics (precise BN, docs/results.md §5.3-5.4)
the ``fix`` row of a rerun corresponds to the published ``reestimate_bn`` row, not to ``fix``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Applied first to every cell: the ablation's starting point is the ``cpu`` preset *before* it
#: adopted the winner (LARS, one forward pass per view), so the published table (docs/results.md
#: §5) is reproduced by the same command after the preset changed. Only with ``--preset cpu``.
BASE_CPU: dict[str, Any] = {"pretrain": {"optimizer": "lars", "joined_views": False},
                            "finetune": {"joined_views": False}}
#: Option name -> config overrides on top of the preset (and BASE_CPU). ``fix`` is the preset as it
#: stands. Every other variant is one option alone on top of ``fix``.
VARIANTS: dict[str, dict[str, Any]] = {
    "fix": {},
    "joined_views": {"pretrain": {"joined_views": True}, "finetune": {"joined_views": True}},
    "adamw": {"pretrain": {"optimizer": "adamw"}},
}
OPTIONS = [v for v in VARIANTS if v != "fix"]
#: Poolings over windows that every cell is scored with (``official_<pooling>`` in cell.json).
POOLINGS = ("mean", "max")
#: Options that only change pre-training (no effect on ``scratch``) or the encoder (``random``).
PRETRAIN_ONLY = {"adamw"}
ENCODER_ONLY: set[str] = set()
LEARNED = ("scratch", "vicreg", "dgmix")


def applies(variant: str, method: str) -> bool:
    """Whether ``variant`` changes anything for ``method`` (cells that would repeat ``fix`` are skipped)."""
    if "+" in variant:
        return any(applies(part, method) for part in variant.split("+"))
    if variant in ("fix", "best"):
        return True
    if method == "random":
        return variant in ENCODER_ONLY
    if method == "scratch":
        return variant not in PRETRAIN_ONLY
    return True


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for section, fields in part.items():
            out.setdefault(section, {}).update(fields)
    return out


# --------------------------------------------------------------------------- one cell


def rescore(data: Path, work: Path, cfg: Any, method_name: str, cache: Path) -> dict[str, float | None]:
    """Official score of the run's trained encoders, re-scored with each of POOLINGS: per machine
    type, a detector fitted on the training clips (1-NN, one bank per section) scores the test clips."""
    from dgmix.data import scan
    from dgmix.methods import fit_detector, get_method, load_machine
    from dgmix.metrics.tables import ResultsTable
    from dgmix.pipeline import DONE_FILE, evaluate_machine, read_done

    method = get_method(method_name)
    ds = scan(data, split=cfg.split)
    tables = {p: ResultsTable() for p in POOLINGS}
    for machine in ds.machines():
        md = load_machine(ds, machine, cfg.features, cache, progress=False)
        model_dir, *_ = read_done(work / method_name / machine / DONE_FILE, work / method_name, md)
        encoder = method.encoder(model_dir, cfg)
        sections = [r.section for r in md.test]
        for pooling, table in tables.items():
            scoring = dataclasses.replace(cfg.scoring, pooling=pooling, backend="1nn", per_domain=False,
                                          select="none", per_method={})
            det = fit_detector(method_name, md, cfg, scoring, encoder=encoder)
            res = evaluate_machine(md, det.score_features(md.test_feats, sections))
            if res:
                table.add_machine(method_name, machine, res)
    return {p: t.official_score(method_name) if t.methods() else None for p, t in tables.items()}


def run_cell(job: dict[str, Any]) -> dict[str, Any]:
    """Train and score one (variant, method, seed); returns and writes its cell.json."""
    import torch

    torch.set_num_threads(job["threads"])
    from dgmix.config import load_config
    from dgmix.pipeline import run_pipeline

    cell_dir = Path(job["cell_dir"])
    work = cell_dir / "run"
    if work.exists():
        shutil.rmtree(work)
    base = job.get("base", BASE_CPU if job["preset"] == "cpu" else {})
    overrides = merge(base, job["overrides"])
    overrides["seed"] = job["seed"]
    cfg = load_config(job["preset"], overrides=overrides)
    t0 = time.perf_counter()
    summary = run_pipeline(Path(job["data"]), work, cfg, methods=[job["method"]], cache_dir=Path(job["cache"]),
                           progress=False, echo=lambda _msg: None, device=job["device"])
    method = job["method"]
    official = (rescore(Path(job["data"]), work, cfg, method, Path(job["cache"])) if job.get("rescore", True)
                else {})
    seconds = time.perf_counter() - t0
    table = summary.table
    machines = {}
    for machine in table.machines(method):
        hm = table.machine_summary(method, machine)
        stages = {}
        for stage in ("pretrain", "finetune"):
            p = work / method / machine / stage / "summary.json"
            if p.is_file():
                stages[stage] = json.loads(p.read_text())
        machines[machine] = {"auc_source": hm.auc_source, "auc_target": hm.auc_target, "pauc": hm.pauc,
                             "hmean": hm.hmean, "stages": stages}
    as_run = table.official_score(method) if method in table.methods() else None
    result = {"variant": job["variant"], "method": method, "seed": job["seed"], "preset": job["preset"],
              "overrides": job["overrides"], **{f"official_{p}": v for p, v in official.items()},
              "official_as_run": as_run, "machines": machines, "seconds": round(seconds, 2),
              "device": "cuda" if job["device"] != "cpu" and torch.cuda.is_available() else "cpu"}
    (cell_dir / "cell.json").write_text(json.dumps(result, indent=1))
    if not job["keep"]:
        shutil.rmtree(work, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- planning


def plan(args: argparse.Namespace, variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    jobs = []
    # seed-major order: a run cut short by a time limit leaves fewer seeds, not missing variants
    for seed in args.seeds:
        for variant, overrides in variants.items():
            for method in args.methods:
                if not applies(variant, method):
                    continue
                if method == "random" and variant != "fix" and "model" not in overrides:
                    continue  # the control depends on the encoder options only: this cell repeats `fix`
                cell_dir = Path(args.out) / "cells" / variant / method / f"seed{seed}"
                if (cell_dir / "cell.json").is_file():
                    continue
                cell_dir.mkdir(parents=True, exist_ok=True)
                jobs.append({"variant": variant, "method": method, "seed": seed, "overrides": overrides,
                             "cell_dir": str(cell_dir), "data": args.data,
                             "cache": str(Path(args.out) / "cache"), "preset": args.preset,
                             "threads": args.threads, "device": args.device, "keep": args.keep})
    return jobs


def fill_cache(data: str, cache: Path, workers: int) -> None:
    """Compute every clip's features once, before the cells (which then only read the cache)."""
    from dgmix.config import load_config
    from dgmix.data import scan
    from dgmix.features import FeatureCache

    ds = scan(Path(data))
    cfg = load_config("cpu")
    FeatureCache(cache, cfg.features).fill([r.path for r in ds.records], workers=workers, progress=False)


def best_overrides(sel_out: Path) -> tuple[list[str], dict[str, Any]]:
    data = json.loads((Path(sel_out) / "best.json").read_text())
    chosen = data["chosen"]
    return chosen, merge(*(VARIANTS[o] for o in chosen))


def _points(res: dict[str, Any]) -> str:
    """The cell's scores for a progress line: each pooling's rescore, else the run's own score."""
    shown = {p: res.get(f"official_{p}") for p in POOLINGS}
    if all(v is None for v in shown.values()):
        shown = {"official": res.get("official_as_run")}
    return " ".join(f"{k} {'n/a' if v is None else f'{100 * v:.2f}'}" for k, v in shown.items())


def run_jobs(jobs: list[dict[str, Any]], n_workers: int, t0: float) -> None:
    print(f"{len(jobs)} cells to run with {n_workers} worker(s)", flush=True)
    if not jobs:
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(n_workers, maxtasksperchild=8) as pool:
        for done, res in enumerate(pool.imap_unordered(run_cell, jobs), 1):
            print(f"[{time.perf_counter() - t0:7.1f}s] {done}/{len(jobs)} {res['variant']:>20} {res['method']:>7} "
                  f"seed {res['seed']}: {_points(res)} ({res['seconds']:.0f} s)", flush=True)


def cmd_run(args: argparse.Namespace) -> None:
    """Options phase (every variant of VARIANTS, or ``--variants``), then the ``best`` phase: its
    combination comes from ``--best-from`` (another OUT's best.json) or, without it, from this
    OUT's own option cells (``select``)."""
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.methods = args.methods.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fill_cache(args.data, out / "cache", workers=max(1, args.jobs * args.threads))
    print(f"features ready in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.phase in ("options", "all"):
        names = args.variants.split(",") if args.variants else list(VARIANTS)
        # "a+b" is the combination of options a and b (e.g. adamw+joined_views)
        unknown = [part for n in names for part in n.split("+") if part not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)} or join them with +")
        run_jobs(plan(args, {n: merge(*(VARIANTS[part] for part in n.split("+"))) for n in names}), args.jobs, t0)
    if args.phase in ("best", "all"):
        if args.best_from is None:
            cmd_select(argparse.Namespace(out=str(out), min_gain=args.min_gain))
        chosen, overrides = best_overrides(Path(args.best_from or out))
        (out / "best_used.json").write_text(json.dumps({"from": str(args.best_from or out), "chosen": chosen}))
        run_jobs(plan(args, {"best": overrides}), args.jobs, t0)


# --------------------------------------------------------------------------- reading results


def load_cells(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("cells/*/*/seed*/cell.json"))]


def group(cells: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    g: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        g.setdefault((c["variant"], c["method"]), []).append(c)
    return g


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and half the range (max - min) / 2, in points."""
    pts = [100 * v for v in values]
    return statistics.fmean(pts), (max(pts) - min(pts)) / 2


def cmd_select(args: argparse.Namespace) -> None:
    """The pre-registered rule: keep an option whose mean gain over ``fix`` is >= min_gain points."""
    g = group(load_cells(Path(args.out)))
    gains: dict[str, float] = {}
    for option in OPTIONS:
        deltas = []
        for method in LEARNED:
            if not applies(option, method) or (option, method) not in g or ("fix", method) not in g:
                continue
            base = {c["seed"]: c for c in g[("fix", method)]}
            for c in g[(option, method)]:
                if c["seed"] in base:
                    for key in ("official_mean", "official_max"):
                        deltas.append(100 * (c[key] - base[c["seed"]][key]))
        if deltas:
            gains[option] = statistics.fmean(deltas)
    chosen = [o for o, d in gains.items() if d >= args.min_gain]
    data = {"rule": f"option kept when its mean official-score gain over fix (learned methods it applies to, "
                    f"seeds, mean and max pooling) is >= {args.min_gain} points",
            "gains": {k: round(v, 3) for k, v in gains.items()}, "chosen": chosen}
    (Path(args.out) / "best.json").write_text(json.dumps(data, indent=1))
    print(json.dumps(data, indent=1))


def cmd_table(args: argparse.Namespace) -> None:
    lines = []
    for out in args.outs:
        cells = load_cells(Path(out))
        g = group(cells)
        name = Path(out).name
        lines += [f"### {name}", "",
                  "| variant | method | seeds | official, mean pooling | official, max pooling | AUC-S | AUC-T "
                  "| pAUC | enc. weight change pre / fine | embedding std (fine) | s / cell |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        combos = sorted({c["variant"] for c in cells if "+" in c["variant"]})
        order = ["before", "fix", *OPTIONS, "best", *combos]
        for variant in order:
            for method in (*LEARNED, "random"):
                cs = g.get((variant, method))
                if not cs:
                    continue
                m, sp = mean_spread([c["official_mean"] for c in cs])
                x, sx = mean_spread([c["official_max"] for c in cs])

                def avg(key: str, cs=cs) -> str:
                    vals = [mm[key] for c in cs for mm in c["machines"].values()]
                    return f"{100 * statistics.fmean(vals):.1f}" if vals else "-"

                def stage(stage: str, key: str, cs=cs, pct: bool = True) -> str:
                    vals = [mm["stages"][stage][key] if key in mm["stages"].get(stage, {})
                            else mm["stages"][stage]["last_terms"].get(key)
                            for c in cs for mm in c["machines"].values() if stage in mm["stages"]]
                    vals = [v for v in vals if v is not None]
                    if not vals:
                        return "-"
                    v = statistics.fmean(vals)
                    return f"{100 * v:.1f} %" if pct else f"{v:.2f}"

                wc = f"{stage('pretrain', 'encoder_weight_change')} / {stage('finetune', 'encoder_weight_change')}"
                secs = statistics.fmean(c["seconds"] for c in cs)
                lines.append(f"| {variant} | {method} | {len(cs)} | {m:.2f} ± {sp:.2f} | {x:.2f} ± {sx:.2f} | "
                             f"{avg('auc_source')} | {avg('auc_target')} | {avg('pauc')} | {wc} | "
                             f"{stage('finetune', 'embedding_std', pct=False)} | {secs:.0f} |")
        best = Path(out) / "best_used.json"
        if best.is_file():
            lines += ["", f"`best` = {', '.join(json.loads(best.read_text())['chosen']) or 'fix (no option kept)'}"]
        lines.append("")
    text = "\n".join(lines)
    if args.md:
        Path(args.md).write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the cells")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--preset", default="cpu")
    r.add_argument("--phase", choices=("options", "best", "all"), default="options")
    r.add_argument("--variants", default=None, help="comma list (default: all of VARIANTS)")
    r.add_argument("--best-from", default=None, help="an OUT whose best.json defines the 'best' variant")
    r.add_argument("--min-gain", type=float, default=1.0)
    r.add_argument("--methods", default="scratch,vicreg,dgmix,random")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--device", default="auto")
    r.add_argument("--keep", action="store_true", help="keep each cell's run directory")
    s = sub.add_parser("select", help="apply the selection rule to an OUT's cells -> OUT/best.json")
    s.add_argument("out")
    s.add_argument("--min-gain", type=float, default=1.0)
    t = sub.add_parser("table", help="markdown table of one or more OUTs")
    t.add_argument("outs", nargs="+")
    t.add_argument("--md", default=None)
    args = parser.parse_args(argv)
    {"run": cmd_run, "select": cmd_select, "table": cmd_table}[args.cmd](args)
    return 0


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds the Pool's context manager, which terminates the workers


def script_main(entry: Callable[[], int]) -> None:
    """Run a cell script's ``main``: unbuffered output, SIGTERM stops the pool's workers too."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(entry())


if __name__ == "__main__":
    script_main(main)
