"""Read what a run directory holds for the report: results, test scores with labels, thresholds,
training-set embeddings and the training logs (no torch needed unless thresholds must come from
``detector.pt``)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from dgmix.errors import InputError
from dgmix.metrics.tables import ResultsTable, _machine_sort_key
from dgmix.report.inputs import TestClips, TrainEmbeddings, inputs_dir, read_test_clips, read_train_embeddings
from dgmix.scoring.csvio import find_score_files, labels_from_names, read_scores
from dgmix.training.log import read_log

#: Training stages whose log.jsonl the report plots, in pipeline order.
STAGES = ("pretrain", "finetune", "baseline")


@dataclass
class SectionScores:
    """Test scores of one method on one section, with labels and the decision threshold."""

    scores: np.ndarray
    is_anomaly: np.ndarray
    is_target: np.ndarray
    threshold: float | None


@dataclass
class RunContents:
    info: dict
    config: dict
    table: ResultsTable | None
    methods: list[str]
    machines: list[str]
    #: method -> machine -> section -> scores
    scores: dict[str, dict[str, dict[str, SectionScores]]] = field(default_factory=dict)
    #: machine -> method -> embeddings
    embeddings: dict[str, dict[str, TrainEmbeddings]] = field(default_factory=dict)
    #: (method, stage) -> machine -> log records
    logs: dict[tuple[str, str], dict[str, list[dict]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _thresholds(run_dir: Path, method: str, machine: str) -> dict[str, float]:
    path = inputs_dir(run_dir, machine) / f"{method}.json"
    if path.is_file():
        try:
            d = json.loads(path.read_text())
            return dict(zip(d["sections"], d["thresholds"]))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(path, f"not a readable thresholds file ({e})") from None
    det = run_dir / method / machine / "detector.pt"
    if det.is_file():
        from dgmix.scoring.detector import Detector

        b = Detector.load(det)
        return dict(zip(b.section_names, b.thresholds.tolist()))
    return {}


def _labels(clips: TestClips | None, names: list[str], score_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(is_anomaly, is_target)`` of the scored clips: from ``test_clips.csv``, else from their names."""
    if clips is not None:
        pos = {n: i for i, n in enumerate(clips.names)}
        if all(n in pos for n in names):
            idx = [pos[n] for n in names]
            return clips.is_anomaly[idx], clips.is_target[idx]
    try:
        gt = labels_from_names(names, score_path)
    except InputError:
        return None
    return gt.is_anomaly.astype(bool), gt.is_target.astype(bool)


def _read_if_there(path: Path, read, default=None):
    return read(path) if path.is_file() else default


def collect(run_dir: Path) -> RunContents:
    """Everything the report shows, read from ``run_dir`` (written by ``dgmix run``).

    Raises:
        InputError: ``run_dir`` is not a run directory (no ``results.json`` and no score files).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run directory not found")
    info = _read_if_there(run_dir / "run_info.json", lambda p: json.loads(p.read_text()), {})
    config = _read_if_there(run_dir / "config.yaml", lambda p: yaml.safe_load(p.read_text()) or {}, {})
    table = _read_if_there(run_dir / "results.json", ResultsTable.read_json)
    from dgmix.methods import method_names

    known = method_names()
    names = info.get("methods") or [p.parent.name for p in run_dir.glob("*/scores")]
    methods = sorted({m for m in names if (run_dir / m / "scores").is_dir()},
                     key=lambda m: (known.index(m) if m in known else len(known), m))
    if table is None and not methods:
        raise InputError(run_dir, "not a dgmix run directory (no results.json and no <method>/scores/)")
    rc = RunContents(info, config, table, methods, [])
    test_clips = functools.cache(lambda machine: _read_if_there(inputs_dir(run_dir, machine) / "test_clips.csv",
                                                                read_test_clips))
    thresholds = functools.cache(lambda method, machine: _thresholds(run_dir, method, machine))
    machines: set[str] = set()
    for method in methods:
        for machine, section, score_path, _ in find_score_files(run_dir / method / "scores"):
            machines.add(machine)
            names, scores = read_scores(score_path)
            labels = _labels(test_clips(machine), names, score_path)
            if labels is None:
                rc.notes.append(f"{method}/{machine}/{section}: no labels for the test clips (no ROC, no histogram)")
                continue
            by_section = rc.scores.setdefault(method, {}).setdefault(machine, {})
            by_section[section] = SectionScores(scores, *labels, thresholds(method, machine).get(section))
    rc.machines = sorted(machines, key=_machine_sort_key)
    for machine in rc.machines:
        for method in methods:
            p = inputs_dir(run_dir, machine) / f"{method}_train.npz"
            if p.is_file():
                rc.embeddings.setdefault(machine, {})[method] = read_train_embeddings(p)
            for stage in STAGES:
                try:
                    if (lp := run_dir / method / machine / stage / "log.jsonl").is_file():
                        rc.logs.setdefault((method, stage), {})[machine] = read_log(lp)
                except (OSError, ValueError) as e:
                    rc.notes.append(f"{lp}: unreadable training log ({e})")
    if not rc.embeddings:
        rc.notes.append("no training embeddings saved in this run (report_inputs/): no t-SNE")
    return rc
