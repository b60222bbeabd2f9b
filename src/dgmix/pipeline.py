"""The whole pipeline per machine type and method: train, embed, score, decide, evaluate.

The methods (the paper's four rows of Tables 2-3 plus the simple-features floor) are registered
objects with one interface (:mod:`dgmix.methods`); this module loops over them by name without
knowing what any of them does.

Outputs under ``RUN/``: ``<method>/scores/anomaly_score_<machine>_section_<XX>_test.csv`` and
``decision_result_...`` in the official format, ``<method>/<machine>/detector.pt`` bundles,
training run dirs, ``results.{md,csv,json}``, the resolved ``config.yaml`` and ``split.csv`` (every
clip's train/test split, :func:`dgmix.data.write_split_csv`).

A section whose test set lacks a group (no anomalous, source-domain normal or target-domain normal
clip) is evaluated with the metrics that can be computed (:mod:`dgmix.metrics.dcase`); the run
prints one warning line per such section and goes on to the next machine type.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dgmix.config import RunConfig, ScoringConfig, write_config
from dgmix.data import scan, write_split_csv
from dgmix.data.split import split_lines
from dgmix.errors import InputError
from dgmix.methods import (
    MachineData,
    Method,
    TrainJob,
    check_per_method,
    get_method,
    knn_detector,
    load_machine,
    method_names,
    resolve_scoring,
)
from dgmix.metrics import SectionResult, section_metrics
from dgmix.metrics.groups import incomplete_group_warnings, labels_of
from dgmix.metrics.tables import PAPER_RESULTS, ResultsTable, official_values_text
from dgmix.scoring import write_decisions, write_scores
from dgmix.scoring.embed import resolve_device
from dgmix.training.distributed import DistContext


def evaluate_machine(
    md: MachineData, scores: np.ndarray, decisions: np.ndarray | None = None
) -> dict[str, SectionResult]:
    """Per-section DCASE metrics for one machine's test clips (labels from names / ground truth).

    Sections with unlabelled clips are left out; a section that lacks a group gets the metrics
    that can be computed, the others ``None`` (:func:`dgmix.metrics.groups.incomplete_group_warnings`
    names them). A clip with no domain counts as source domain."""
    out: dict[str, SectionResult] = {}
    for sec in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == sec]
        recs = [md.test[i] for i in idx]
        if not recs or any(r.label == "unknown" for r in recs):
            continue
        y, tgt = labels_of(recs)
        out[sec] = section_metrics(y, scores[idx], tgt, None if decisions is None else decisions[idx])
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_outputs(method_dir: Path, md: MachineData, scores: np.ndarray, decisions: np.ndarray) -> None:
    for sec in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == sec]
        if not idx:
            continue
        names = [md.test[i].score_name for i in idx]
        write_scores(method_dir / "scores", md.machine, sec, names, scores[idx])
        write_decisions(method_dir / "scores", md.machine, sec, names, decisions[idx])


def scoring_variants(base: ScoringConfig) -> dict[str, ScoringConfig]:
    """The scoring options of the method x scoring table (issue 5), on top of ``base``. Each
    variant is applied to every method as it stands (no method defaults, no per-method map)."""
    def v(**kw) -> ScoringConfig:
        return dataclasses.replace(base, method_defaults=False, per_method={}, **kw)

    return {
        "mean": v(pooling="mean", window_level=False, domain_aware=False),
        "max": v(pooling="max", window_level=False, domain_aware=False),
        "gwrp": v(pooling="gwrp", window_level=False, domain_aware=False),
        "window-knn-max": v(window_level=True, window_aggregation="max", domain_aware=False),
        "domain-aware": v(pooling="mean", window_level=False, domain_aware=True),
        "max+domain-aware": v(pooling="max", window_level=False, domain_aware=True),
    }


def _uses_knn_back_end(method: Method) -> bool:
    return type(method).build_detector is Method.build_detector


def write_scoring_table(out: Path, tables: dict[str, ResultsTable], main: ResultsTable) -> Path:
    """``scoring_table.{md,json}``: official score (hmean, %) per method x scoring option, plus each
    option's full results under ``scoring/<option>/``."""
    for name, t in tables.items():
        if t.methods():
            t.write(out / "scoring" / name)
    methods = [m for m in method_names() if any(m in t.methods() for t in tables.values())]
    data = {m: {n: t.official_score(m) for n, t in tables.items() if m in t.methods()} for m in methods}
    for m in main.methods():
        data.setdefault(m, {})["as-run"] = main.official_score(m)
    cols = list(tables) + ["as-run"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in methods:
        cells = ["" if c not in data[m] else "n/a" if data[m][c] is None else f"{100 * data[m][c]:.2f}"
                 for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    paper = [get_method(m) for m in methods if get_method(m).paper]
    knn = ", ".join(m.name for m in paper if _uses_knn_back_end(m))
    own = ", ".join(m.name for m in paper if not _uses_knn_back_end(m))
    note = "The paper's configuration (Tables 2-3):"
    note += f" `mean` for {knn}" if knn else ""
    note += ";" if knn and own else ""
    note += f" `as-run` for {own}" if own else ""
    # Every method and option scores the same test clips, so the same values exist for all of them.
    first = next((t for t in [main, *tables.values()] if t.methods()), None)
    values = (f"Each score is over the values that exist: "
              f"{official_values_text(first.results[first.methods()[0]])}.\n" if first is not None else "")
    (out / "scoring_table.json").write_text(json.dumps(data, indent=2))
    path = out / "scoring_table.md"
    path.write_text(
        "Official score (hmean of AUC-S, AUC-T, pAUC, %) per method x scoring option.\n"
        "`as-run`: the scoring of the run itself (for a method with its own detector, e.g. a "
        "classifier score, that one).\n" + (note + ".\n" if paper else "") + values + "\n"
        + "\n".join(lines) + "\n"
    )
    return path


@dataclass
class RunSummary:
    table: ResultsTable
    seconds: float
    out: Path
    timings: dict[str, dict[str, float]]


def run_pipeline(
    data_root: Path,
    out: Path,
    cfg: RunConfig,
    methods: Sequence[str] | None = None,
    machines: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    paper_reference: bool = False,
    extra_scorings: dict[str, ScoringConfig] | None = None,
    device: str = "auto",
) -> RunSummary:
    """Run every method on every machine type; write scores, detectors and results tables.

    ``methods``: registered method names (default: the paper's methods). ``extra_scorings``
    (name -> ScoringConfig) re-scores the same trained models with other scoring options (issue
    5's method x scoring table) into ``scoring_table.{md,json}``. ``device``: where the models
    train, "auto" (CUDA when available), "cpu" or "cuda".
    """
    t0 = time.perf_counter()
    out = Path(out)
    chosen_methods = [get_method(m) for m in (methods if methods is not None else method_names(paper_only=True))]
    check_per_method(cfg.scoring)
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out)
    cache_dir = Path(cache_dir) if cache_dir else out / "cache"
    ds = scan(Path(data_root), split=cfg.split)
    for path, msg in ds.errors:
        echo(f"skipped {path}: {msg}")
    for line in split_lines(ds.splits, ds.split_config):
        echo(line)
    write_split_csv(out / "split.csv", ds.records, ds.root)
    available = ds.machines()
    chosen = list(machines) if machines else available
    missing = [m for m in chosen if m not in available]
    if missing:
        raise InputError(data_root, f"machine type(s) {missing} not found; found {available}")
    table = ResultsTable()
    extra_tables = {name: ResultsTable() for name in (extra_scorings or {})}
    timings: dict[str, dict[str, float]] = {}
    ctx = DistContext(device=torch.device(resolve_device(device)))
    for mi, machine in enumerate(chosen, 1):
        md = load_machine(ds, machine, cfg.features, cache_dir, progress)
        for line in incomplete_group_warnings(md.test):
            echo(f"warning: {line}")
        for method in chosen_methods:
            name = method.name
            echo(f"[{time.perf_counter() - t0:6.0f}s] {machine} ({mi}/{len(chosen)}) {name}: training")
            t_train = time.perf_counter()
            model_dir = method.train(TrainJob(Path(data_root), md, cfg, out / name / machine, cache_dir,
                                              progress, ctx))
            timings.setdefault(name, {})[machine] = time.perf_counter() - t_train if model_dir else 0.0
            emb_cache: dict = {}  # window embeddings of this trained model, shared by the scorings
            bundle, scores = method.build_detector(model_dir, md, cfg, resolve_scoring(cfg.scoring, method),
                                                   cache=emb_cache)
            decisions = bundle.decide(scores, [r.section for r in md.test])
            write_outputs(out / name, md, scores, decisions)
            bundle.save(out / name / machine / "detector.pt")
            res = evaluate_machine(md, scores, decisions)
            if res:
                table.add_machine(name, machine, res)
                hm = table.machine_summary(name, machine)
                echo(f"         {machine} {name}: AUC-S {_fmt(hm.auc_source)} AUC-T {_fmt(hm.auc_target)} "
                     f"pAUC {_fmt(hm.pauc)} hmean {_fmt(hm.hmean)}")
            if extra_scorings:
                encoder = method.encoder(model_dir, cfg)
                for variant, sc in extra_scorings.items():
                    _, s2 = knn_detector(name, encoder, md, cfg, sc, cache=emb_cache)
                    r2 = evaluate_machine(md, s2)
                    if r2:
                        extra_tables[variant].add_machine(name, machine, r2)
    seconds = time.perf_counter() - t0
    if table.methods():
        table.write(out, paper=PAPER_RESULTS if paper_reference else None)
    if extra_tables:
        write_scoring_table(out, extra_tables, table)
    return RunSummary(table, seconds, out, timings)
