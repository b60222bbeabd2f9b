"""The whole pipeline per machine type and method: train, embed, score, decide, evaluate.

The methods (the paper's four rows of Tables 2-3 plus the simple-features floor) are registered
objects with one interface (:mod:`dgmix.methods`); this module loops over them by name without
knowing what any of them does.

Outputs under ``RUN/``: ``<method>/scores/anomaly_score_<machine>_section_<XX>_test.csv`` and
``decision_result_...`` in the official format, ``<method>/<machine>/detector.pt`` bundles,
training run dirs, ``results.{md,csv,json}``, the resolved ``config.yaml``, ``split.csv`` (every
clip's train/test split, :func:`dgmix.data.write_split_csv`), ``run_info.json`` (data root,
methods, whether the paper's numbers apply, each stage's wall time and peak RSS:
:mod:`dgmix.runinfo`), ``skipped.csv`` (clips left out) and, with ``report.enabled``,
``report_inputs/`` (:mod:`dgmix.report.inputs`).

A section whose test set lacks a group (no anomalous, source-domain normal or target-domain normal
clip) is evaluated with the metrics that can be computed (:mod:`dgmix.metrics.dcase`); the run
prints one warning line per such section and goes on to the next machine type.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgmix.config import RunConfig, write_config
from dgmix.data import scan, write_split_csv
from dgmix.data.split import split_lines
from dgmix.errors import InputError, shown_path
from dgmix.io_atomic import atomic_write_text
from dgmix.methods import (
    MachineData,
    TrainJob,
    check_per_method,
    get_method,
    load_machine,
    method_names,
    resolve_scoring,
)
from dgmix.metrics import SectionResult, section_metrics
from dgmix.metrics.confidence import SectionScores, official_score_ci
from dgmix.metrics.groups import incomplete_group_warnings, labels_of
from dgmix.metrics.tables import PAPER_RESULTS, ResultsTable
from dgmix.report.inputs import keep_for_report, save_test_clips
from dgmix.report.maps import keep_explanations
from dgmix.runinfo import RUN_INFO, SKIPPED_CSV, StageClock, check_same_split, peak_rss_mb, write_skipped
from dgmix.scoring import write_decisions, write_scores
from dgmix.scoring.csvio import decision_file_name, read_decisions, read_scores, score_file_name, write_p_values
from dgmix.scoring.health import health_message
from dgmix.training.distributed import DistContext, resolve_device


def _by_section(md: MachineData) -> dict[str, list[int]]:
    """Indices into ``md.test`` of each section's clips (sections without test clips left out)."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(md.test):
        out.setdefault(r.section, []).append(i)
    return {sec: out[sec] for sec in md.section_names if sec in out}


def evaluate_machine(md: MachineData, scores: np.ndarray, decisions: np.ndarray | None = None
                     ) -> dict[str, SectionResult]:
    """Per-section DCASE metrics for one machine's test clips (labels from names / ground truth).

    Sections with unlabelled clips are left out; a section that lacks a group gets the metrics
    that can be computed, the others ``None`` (:func:`dgmix.metrics.groups.incomplete_group_warnings`
    names them). A clip with no domain counts as source domain."""
    out: dict[str, SectionResult] = {}
    for sec, idx in _by_section(md).items():
        recs = [md.test[i] for i in idx]
        if not any(r.label == "unknown" for r in recs):
            y, tgt = labels_of(recs)
            out[sec] = section_metrics(y, scores[idx], tgt, None if decisions is None else decisions[idx])
    return out


def section_scores(md: MachineData, scores: np.ndarray, sections: Sequence[str]) -> list[SectionScores]:
    """Labels, scores and domains of the test clips of ``sections`` (for the jackknife interval)."""
    out = []
    for idx in (_by_section(md)[sec] for sec in sections):
        out.append(SectionScores(np.array([md.test[i].label == "anomaly" for i in idx], dtype=int), scores[idx],
                                 np.array([md.test[i].domain == "target" for i in idx], dtype=int)))
    return out


def attach_ci(table: ResultsTable, groups: dict[str, list[SectionScores]], echo: Callable[[str], None]) -> None:
    """The jackknife 95 % interval of each method's official score (dgmix.metrics.confidence)."""
    for method in table.methods():
        if table.official_score(method) is None:  # nothing to average: no interval either
            continue
        try:
            table.set_ci(method, official_score_ci(groups[method]))
        except ValueError as exc:  # a group with a single test clip
            echo(f"{method}: no confidence interval ({exc})")


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{100 * v:5.2f}"


def write_outputs(method_dir: Path, md: MachineData, scores: np.ndarray, decisions: np.ndarray,
                  p_values: np.ndarray | None = None) -> None:
    """The official score and decision CSVs of each test section, and beside them its p-values
    (``p_value_<machine>_section_<XX>_test.csv``, :mod:`dgmix.scoring.conformal`)."""
    for sec, idx in _by_section(md).items():
        names = [md.test[i].score_name for i in idx]
        write_scores(method_dir / "scores", md.machine, sec, names, scores[idx])
        write_decisions(method_dir / "scores", md.machine, sec, names, decisions[idx])
        if p_values is not None:
            write_p_values(method_dir / "scores", md.machine, sec, names, p_values[idx])


#: Written into ``RUN/<method>/<machine>/`` after its scores, decisions and detector: that pair is done.
DONE_FILE = "done.json"
#: what `scoring.select: pseudo` measured and chose, next to the detector bundle
SELECTION_FILE = "selection.json"


def write_done(path: Path, model_dir: Path | None, health: dict | None) -> None:
    rel = None if model_dir is None else os.path.relpath(model_dir, path.parent)  # the run folder may move
    atomic_write_text(path, json.dumps({"model_dir": rel, "health": health}) + "\n")


def read_done(path: Path, method_dir: Path,
              md: MachineData) -> tuple[Path | None, np.ndarray, np.ndarray, dict | None]:
    """(model dir, scores, decisions, health) of a finished (method, machine) pair, in ``md.test``
    order, read back from its official CSVs (scores are written with ``repr``: they read back exactly)."""
    try:
        done = json.loads(path.read_text())
        model_dir, health = done["model_dir"], done["health"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"cannot read the resume marker ({exc}); rerun with --overwrite") from None
    scores = np.full(len(md.test), np.nan)
    decisions = np.zeros(len(md.test), dtype=np.int64)
    pos = {r.name: i for i, r in enumerate(md.test)}
    for sec in _by_section(md):
        for reader, name_of, target in ((read_scores, score_file_name, scores),
                                        (read_decisions, decision_file_name, decisions)):
            csv_path = method_dir / "scores" / name_of(md.machine, sec)
            names, values = reader(csv_path)
            for n, v in zip(names, values):
                if n not in pos:
                    raise InputError(csv_path, f"{n!r} is not a test clip of this data; rerun with --overwrite")
                target[pos[n]] = v
    if np.isnan(scores).any():
        raise InputError(method_dir / "scores", "score files lack some test clips; rerun with --overwrite")
    return (None if model_dir is None else path.parent / model_dir), scores, decisions, health


@dataclass
class MethodOutcome:
    """What the main process keeps of one (method, machine type): results, scores for the CI."""

    name: str
    results: dict[str, SectionResult]
    section_scores: list[SectionScores]
    seconds: float
    degenerate: str | None


@dataclass
class MachineOutcome:
    machine: str
    methods: list[MethodOutcome]
    stages: dict[str, Any]
    lines: list[str]
    skipped: list[tuple[Path, str, str]]  # (path, split, reason) of every clip left out
    n_test_found: int  # test clips of this machine type in the data, before any was left out


@dataclass
class _MachineJob:
    """Everything one machine type's work needs (picklable: it goes to worker processes)."""

    ds: Any
    methods: list[str]
    cfg: RunConfig
    out: Path
    data_root: Path
    cache_dir: Path
    progress: bool
    ctx: DistContext
    resume: bool
    t0: float  # wall-clock start of the run (time.time()), for the progress lines
    n_machines: int
    on_error: str = "skip"


def resolve_jobs(jobs: int | str, n_machines: int, ctx: DistContext) -> int:
    """Machine types trained at once: ``auto`` is 1 on the CPU (its cores are shared by one
    machine type's threads already) and every machine type on a GPU; never more than there are."""
    if jobs == "auto":
        n = 1 if ctx.device.type != "cuda" else n_machines
    else:
        try:
            n = int(jobs)
        except (TypeError, ValueError):
            raise InputError("--jobs", f"must be a positive integer or auto, got {jobs!r}") from None
        if n < 1:
            raise InputError("--jobs", f"must be a positive integer or auto, got {jobs!r}")
    if n > 1 and ctx.world_size > 1:
        raise InputError("--jobs", "runs machine types in parallel processes; not under torchrun (DDP)")
    return max(1, min(n, n_machines))


def _run_machines(job: _MachineJob, machines: list[str], n_jobs: int,
                  echo: Callable[[str], None]) -> Iterator[MachineOutcome]:
    """Each machine type's outcome, in the order of ``machines``. With ``n_jobs > 1`` they run in
    worker processes (spawned, each with ``cores // n_jobs`` torch threads); every stage seeds
    itself from ``cfg.seed``, so a machine type's result does not depend on what runs beside it
    or on the order (tests/test_jobs.py: byte-identical score CSVs at equal thread counts).
    Progress lines are printed as each machine type ends."""
    if n_jobs == 1:
        for mi, machine in enumerate(machines, 1):
            yield _run_machine(job, machine, mi, echo)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(_run_machine, job, m, mi, None) for mi, m in enumerate(machines, 1)]
        for fut in futures:
            outcome = fut.result()
            for line in outcome.lines:
                echo(line)
            yield outcome


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_machine(job: _MachineJob, machine: str, mi: int, echo: Callable[[str], None] | None) -> MachineOutcome:
    """Train, score and evaluate every method on one machine type; writes its outputs under ``job.out``."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if echo is not None:
            echo(line)

    cfg, out, ds = job.cfg, job.out, job.ds
    clock = StageClock()
    clock.start()
    md = load_machine(ds, machine, cfg.features, job.cache_dir, job.progress, job.on_error)
    clock.lap(machine, "features")
    for line in incomplete_group_warnings(md.test):
        say(f"warning: {line}")
    if cfg.report.enabled:
        save_test_clips(out, machine, md.test)
    outcomes: list[MethodOutcome] = []
    local = ResultsTable()  # this machine type's rows, for the progress lines
    for name in job.methods:
        method = get_method(name)
        done = out / name / machine / DONE_FILE
        kept = job.resume and done.is_file()
        picked = ""  # the scoring select: pseudo chose, for the progress line
        if kept:  # finished before the interruption: kept as it is (report inputs included)
            model_dir, scores, decisions, health = read_done(done, out / name, md)
            seconds = 0.0
        else:
            clock.start()
            model_dir = method.train(TrainJob(job.data_root, md, cfg, out / name / machine, job.cache_dir,
                                              job.progress, job.ctx, resume=job.resume))
            t_train = clock.lap(machine, "train", name)
            seconds = t_train if model_dir else 0.0
            detector = method.build_detector(model_dir, md, cfg, resolve_scoring(cfg.scoring, method))
            clock.lap(machine, "detector", name)
            test_sections = [r.section for r in md.test]
            scores = detector.score_features(md.test_feats, test_sections)
            decisions = detector.decide(scores, test_sections)
            p_values = detector.p_values(scores, test_sections)
            clock.lap(machine, "score", name)
            write_outputs(out / name, md, scores, decisions, p_values)
            detector.save(out / name / machine / "detector.pt")
            if detector.info.selection is not None:  # scoring.select: pseudo
                atomic_write_text(out / name / machine / SELECTION_FILE,
                                  json.dumps(detector.info.selection, indent=1) + "\n")
                picked = detector.info.selection["chosen"]
            if cfg.report.enabled:
                keep_for_report(out, name, md, detector, cfg.seed)
                keep_explanations(out / name / machine, md, detector, scores, p_values)
            health = detector.info.health
            write_done(done, model_dir, health)
            clock.lap(machine, "outputs", name)
        res = evaluate_machine(md, scores, decisions)
        line = f"[{time.time() - job.t0:6.0f}s] {machine} ({mi}/{job.n_machines}) {name:<8}"
        if res:
            local.add_machine(name, machine, res)
            hm = local.machine_summary(name, machine)
            line += (f" hmean {_pct(hm.hmean)}  (AUC-S {_pct(hm.auc_source)}, "
                     f"AUC-T {_pct(hm.auc_target)}, pAUC {_pct(hm.pauc)})")
        else:
            line += " scored (no labelled test section to evaluate)"
        if picked:
            line += f", scoring chosen on training clips: {picked}"
        if kept:
            line += ", finished in the earlier run, kept"
        elif model_dir:
            line += f", trained in {seconds:.1f} s"
        problem = health_message(health)
        if problem:
            line += f"\n  warning: {name}/{machine}: {problem}"
        say(line)
        outcomes.append(MethodOutcome(name, res, section_scores(md, scores, list(res)) if res else [], seconds,
                                      health["reason"] if problem else None))
    return MachineOutcome(machine, outcomes, clock.stages.get(machine, {}), lines, md.skipped,
                          len(ds.select(machine=machine, split="test")))

@dataclass
class RunSummary:
    table: ResultsTable
    seconds: float
    out: Path
    timings: dict[str, dict[str, float]]


def run_pipeline(data_root: Path, out: Path, cfg: RunConfig, methods: Sequence[str] | None = None,
                 machines: Sequence[str] | None = None, cache_dir: Path | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print, paper_reference: bool = False, device: str = "auto",
                 resume: bool = False, jobs: int | str = 1, on_error: str = "skip") -> RunSummary:
    """Run every method on every machine type; write scores, detectors and results tables.

    ``on_error``: ``skip`` leaves out a clip that cannot be used (named on one line, listed with
    its reason in ``skipped.csv``, counted in the summary and in results.json's ``test_clips``);
    ``fail`` stops at the first one. ``jobs``: machine types trained at once, in worker
    processes (:func:`resolve_jobs`; ``auto``: 1 on the CPU, all of them on a GPU); the outputs
    are those of one machine type at a time with the workers' torch thread count (on the CPU the
    thread count moves float rounding; GPU kernels do not depend on it).

    ``methods``: registered method names (default: the paper's methods). ``device``: where the
    models train, "auto" (CUDA when available), "cpu" or "cuda". ``resume``: continue an
    interrupted run in ``out``: a (method, machine type) whose ``done.json`` exists is read back
    from its score CSVs, the others train again from their stages' checkpoints, so the outputs
    equal those of an uninterrupted run.

    Every test clip is scored by the saved detector module itself
    (:meth:`~dgmix.scoring.detector.Detector.score_features`), so ``dgmix score`` with that
    ``detector.pt`` reproduces the score CSVs exactly.
    """
    t0 = time.perf_counter()
    out = Path(out)
    chosen_methods = [get_method(m) for m in (methods if methods is not None else method_names(paper_only=True))]
    if not chosen_methods:
        raise InputError("--methods", f"no method given; choose from {', '.join(method_names())}")
    check_per_method(cfg.scoring)
    cache_dir = Path(cache_dir) if cache_dir else out / "cache"
    ds = scan(Path(data_root), split=cfg.split)
    if ds.errors and on_error == "fail":
        raise InputError(ds.errors[0][0], f"{ds.errors[0][1]} (--on-error fail)")
    for path, msg in ds.errors:  # on stderr, as every verb's skip lines (the summary line counts them)
        print(f"skipped {shown_path(path)}: {msg}", file=sys.stderr, flush=True)
    if not ds.records:  # before anything is written: an empty folder is no success
        raise InputError(data_root, "no usable clips found" + (
            f" ({len(ds.errors)} file(s) could not be used, listed above)" if ds.errors else
            " (expected DCASE-named .wav files or <machine>/train/ folders; see `dgmix data`)"))
    available = ds.machines()
    chosen = list(machines) if machines else available
    missing = [m for m in chosen if m not in available]
    if missing:  # before anything is written
        raise InputError(data_root, f"machine type(s) {missing} not found; found {available}")
    for line in split_lines(ds.splits, ds.split_config):
        echo(line)
    if resume and (out / "split.csv").is_file():  # the same clips, split the same way, or nothing
        check_same_split(out / "split.csv", ds.records, ds.root)
    write_split_csv(out / "split.csv", ds.records, ds.root)
    if not resume or not (out / RUN_INFO).is_file():  # what the run is on, from its start (read by --resume)
        atomic_write_text(out / RUN_INFO, json.dumps({
            "data_root": str(Path(data_root).resolve()), "paper_reference": paper_reference,
            "methods": [m.name for m in chosen_methods], "machines": chosen, "finished": False}, indent=2) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out)
    table = ResultsTable()
    timings: dict[str, dict[str, float]] = {}
    groups: dict[str, list[SectionScores]] = {}
    ctx = DistContext(device=torch.device(resolve_device(device)))
    n_jobs = resolve_jobs(jobs, len(chosen), ctx)
    job = _MachineJob(ds, [m.name for m in chosen_methods], cfg, out, Path(data_root), cache_dir,
                      progress and n_jobs == 1, ctx, resume, time.time(), len(chosen), on_error)
    stages: dict[str, Any] = {}
    skipped = [(Path(p), "", "", msg) for p, msg in ds.errors]  # (path, machine, split, reason)
    n_found = n_scored = 0
    for outcome in _run_machines(job, chosen, n_jobs, echo):
        stages[outcome.machine] = outcome.stages
        skipped += [(p, outcome.machine, split, msg) for p, split, msg in outcome.skipped]
        n_found += outcome.n_test_found
        n_scored += outcome.n_test_found - sum(split == "test" for _, split, _ in outcome.skipped)
        for r in outcome.methods:
            timings.setdefault(r.name, {})[outcome.machine] = r.seconds
            if r.results:
                table.add_machine(r.name, outcome.machine, r.results)
                groups.setdefault(r.name, []).extend(r.section_scores)
            if r.degenerate:
                table.mark_degenerate(r.name, outcome.machine, r.degenerate)
    attach_ci(table, groups, echo)
    counts = {"found": n_found, "scored": n_scored, "skipped": n_found - n_scored, "other_files_skipped":
              sum(1 for _, m, _, _ in skipped if not m), "list": SKIPPED_CSV if skipped else None}
    write_skipped(out / SKIPPED_CSV, skipped, ds.root)
    echo(f"scored {n_scored} of {n_found} test clips, {n_found - n_scored} skipped"
         + (f"; {len(skipped)} file(s) left out in all, listed with the reason in {out / SKIPPED_CSV}" if skipped
            else ""))
    table.test_clips = counts
    seconds = time.perf_counter() - t0
    atomic_write_text(out / RUN_INFO, json.dumps({
        "data_root": str(Path(data_root).resolve()), "paper_reference": paper_reference,
        "methods": [m.name for m in chosen_methods], "machines": chosen, "seconds": round(seconds, 1),
        "peak_rss_mb": peak_rss_mb(), "jobs": n_jobs, "finished": True, "stages": {"machines": stages},
    }, indent=2) + "\n")
    if table.methods():
        table.write(out, paper=PAPER_RESULTS if paper_reference else None)
    return RunSummary(table, seconds, out, timings)
