"""The whole pipeline per machine type and method: train, embed, score, decide, evaluate.

The methods (the paper's four rows of Tables 2-3 plus the simple-features floor) are registered
objects with one interface (:mod:`dgmix.methods`); this module loops over them by name without
knowing what any of them does.

Outputs under ``RUN/``: ``<method>/scores/anomaly_score_<machine>_section_<XX>_test.csv`` and
``decision_result_...`` in the official format, ``<method>/<machine>/detector.pt`` bundles,
training run dirs, ``results.{md,csv,json}``, ``run_info.json`` (data root, methods, whether the
paper's numbers apply) and, with ``report.enabled``, ``report_inputs/`` (:mod:`dgmix.report.inputs`).
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
from dgmix.data import scan
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
from dgmix.metrics.tables import PAPER_RESULTS, ResultsTable
from dgmix.report.inputs import keep_for_report, save_test_clips
from dgmix.scoring import write_decisions, write_scores
from dgmix.scoring.embed import resolve_device
from dgmix.training.distributed import DistContext

#: What the run was (read by ``dgmix report``).
RUN_INFO = "run_info.json"


def evaluate_machine(
    md: MachineData, scores: np.ndarray, decisions: np.ndarray | None = None
) -> dict[str, SectionResult]:
    """Per-section DCASE metrics for one machine's test clips (labels from names / ground truth)."""
    out: dict[str, SectionResult] = {}
    for sec in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == sec]
        recs = [md.test[i] for i in idx]
        if not recs or any(r.label == "unknown" or r.domain == "unknown" for r in recs):
            continue
        y = np.array([r.label == "anomaly" for r in recs], dtype=int)
        tgt = np.array([r.domain == "target" for r in recs], dtype=int)
        if y.sum() == 0 or y.sum() == len(y):
            continue
        out[sec] = section_metrics(y, scores[idx], tgt, None if decisions is None else decisions[idx])
    return out


def write_outputs(method_dir: Path, md: MachineData, scores: np.ndarray, decisions: np.ndarray) -> None:
    for sec in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == sec]
        if not idx:
            continue
        names = [md.test[i].name for i in idx]
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
        cells = ["" if data[m].get(c) is None else f"{100 * data[m][c]:.2f}" for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    paper = [get_method(m) for m in methods if get_method(m).paper]
    knn = ", ".join(m.name for m in paper if _uses_knn_back_end(m))
    own = ", ".join(m.name for m in paper if not _uses_knn_back_end(m))
    note = "The paper's configuration (Tables 2-3):"
    note += f" `mean` for {knn}" if knn else ""
    note += ";" if knn and own else ""
    note += f" `as-run` for {own}" if own else ""
    (out / "scoring_table.json").write_text(json.dumps(data, indent=2))
    path = out / "scoring_table.md"
    path.write_text(
        "Official score (hmean of AUC-S, AUC-T, pAUC, %) per method x scoring option.\n"
        "`as-run`: the scoring of the run itself (for a method with its own detector, e.g. a "
        "classifier score, that one).\n" + (note + ".\n" if paper else "") + "\n"
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
    ds = scan(Path(data_root))
    for path, msg in ds.errors:
        echo(f"skipped {path}: {msg}")
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
        if cfg.report.enabled:
            save_test_clips(out, machine, md.test)
        for method in chosen_methods:
            name = method.name
            t_train = time.perf_counter()
            model_dir = method.train(TrainJob(Path(data_root), md, cfg, out / name / machine, cache_dir,
                                              progress, ctx))
            timings.setdefault(name, {})[machine] = time.perf_counter() - t_train if model_dir else 0.0
            emb_cache: dict = {}  # window embeddings of this trained model, shared by the scorings
            method_scoring = resolve_scoring(cfg.scoring, method)
            bundle, scores = method.build_detector(model_dir, md, cfg, method_scoring, cache=emb_cache)
            decisions = bundle.decide(scores, [r.section for r in md.test])
            write_outputs(out / name, md, scores, decisions)
            bundle.save(out / name / machine / "detector.pt")
            if cfg.report.enabled:
                keep_for_report(out, name, md, bundle, emb_cache, method_scoring.pooling,
                                cfg.report.tsne_max_points, cfg.seed, resolve_device(method_scoring.device))
            res = evaluate_machine(md, scores, decisions)
            line = f"[{time.perf_counter() - t0:6.0f}s] {machine} ({mi}/{len(chosen)}) {name:<8}"
            if res:
                table.add_machine(name, machine, res)
                hm = table.machine_summary(name, machine)
                line += (f" hmean {100 * hm.hmean:5.2f}  (AUC-S {100 * hm.auc_source:5.2f}, "
                         f"AUC-T {100 * hm.auc_target:5.2f}, pAUC {100 * hm.pauc:5.2f})")
            else:
                line += " scored (no labelled test section to evaluate)"
            echo(line + (f", trained in {timings[name][machine]:.1f} s" if model_dir else ""))
            if extra_scorings:
                encoder = method.encoder(model_dir, cfg)
                for variant, sc in extra_scorings.items():
                    _, s2 = knn_detector(name, encoder, md, cfg, sc, cache=emb_cache)
                    r2 = evaluate_machine(md, s2)
                    if r2:
                        extra_tables[variant].add_machine(name, machine, r2)
    seconds = time.perf_counter() - t0
    (out / RUN_INFO).write_text(json.dumps({
        "data_root": str(Path(data_root).resolve()), "paper_reference": paper_reference,
        "methods": [m.name for m in chosen_methods], "machines": chosen, "seconds": round(seconds, 1),
    }, indent=2) + "\n")
    if table.methods():
        table.write(out, paper=PAPER_RESULTS if paper_reference else None)
    if extra_tables:
        write_scoring_table(out, extra_tables, table)
    return RunSummary(table, seconds, out, timings)
