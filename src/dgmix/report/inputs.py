"""What ``dgmix run`` keeps for the report, under ``RUN/report_inputs/<machine>/``.

* ``test_clips.csv``: ``name,section,domain,label`` of every scored test clip, so that ROC curves and
  histograms also work for evaluation data whose names carry no label (the labels then came from
  the ground truth the pipeline read);
* ``<method>.json``: the detector's per-section decision thresholds (also in ``detector.pt``, read
  here without torch);
* ``<method>_train.npz``: clip embeddings of (at most :data:`dgmix.report.TSNE_MAX_POINTS`) training clips with
  their section, domain and attribute string, for the t-SNE plots (paper Figure 2).

Everything is small: the default synthetic set keeps about 40 KB per method and machine type.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgmix.data import ClipRecord
from dgmix.errors import InputError

INPUTS_DIR = "report_inputs"


def inputs_dir(run_dir: Path, machine: str) -> Path:
    return Path(run_dir) / INPUTS_DIR / machine


def attribute_string(rec: ClipRecord) -> str:
    """The clip's attributes as one label (``key=value`` pairs, sorted; ``-`` when none)."""
    attrs = {k: v for k, v in rec.attributes.items() if k != "_raw"}
    if not attrs:
        return rec.attributes.get("_raw") or "-"
    return " ".join(f"{k}={v}" for k, v in sorted(attrs.items()))


def sample_indices(n: int, limit: int, groups: Sequence[str], seed: int = 0) -> np.ndarray:
    """At most ``limit`` of ``n`` indices, drawn evenly from every group (section x domain), sorted."""
    if n <= limit:
        return np.arange(n)
    rng, labels, uniq = np.random.default_rng(seed), np.asarray(groups), sorted(set(groups))
    per = max(1, limit // len(uniq))
    chosen: list[int] = []
    for g in uniq:
        idx = np.flatnonzero(labels == g)
        chosen += rng.choice(idx, size=min(per, len(idx)), replace=False).tolist()
    return np.array(sorted(chosen[:limit]), dtype=np.int64)


def save_test_clips(run_dir: Path, machine: str, test: Sequence[ClipRecord]) -> Path:
    path = inputs_dir(run_dir, machine) / "test_clips.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["name", "section", "domain", "label"])
        for r in test:
            w.writerow([r.name, r.section, r.domain, r.label])
    return path


@dataclass
class TestClips:
    names: list[str]
    is_target: np.ndarray
    is_anomaly: np.ndarray


def read_test_clips(path: Path) -> TestClips:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return TestClips([r["name"] for r in rows], np.array([r["domain"] == "target" for r in rows]),
                         np.array([r["label"] == "anomaly" for r in rows]))
    except (OSError, KeyError, csv.Error) as e:
        raise InputError(path, f"not a readable test_clips.csv ({e})") from None


@dataclass
class TrainEmbeddings:
    embeddings: np.ndarray
    section: np.ndarray
    domain: np.ndarray
    attribute: np.ndarray


def read_train_embeddings(path: Path) -> TrainEmbeddings:
    try:
        with np.load(path, allow_pickle=False) as z:
            return TrainEmbeddings(z["embeddings"], z["section"], z["domain"], z["attribute"])
    except (OSError, KeyError, ValueError) as e:
        raise InputError(path, f"not a readable embeddings file ({e})") from None


def keep_for_report(run_dir: Path, method: str, md, detector, seed: int = 0) -> None:
    """Save one method's report inputs for one machine type (``md``: a ``MachineData``): the
    thresholds, and the clip embeddings of a sample of training clips as the detector computes them,
    with the clips' section, domain and attributes."""
    from dgmix.report import TSNE_MAX_POINTS

    folder = inputs_dir(run_dir, md.machine)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{method}.json").write_text(json.dumps({"sections": list(detector.section_names),
                                                       "thresholds": detector.thresholds.tolist()}))
    idx = sample_indices(len(md.train), TSNE_MAX_POINTS, [f"{r.section}/{r.domain}" for r in md.train], seed)
    records = [md.train[i] for i in idx]
    fitted = getattr(detector, "train_vectors", None)  # the fit's own clip vectors, when it has them
    vectors = (fitted[idx] if fitted is not None else detector.clip_vectors([md.train_feats[i] for i in idx]))
    vectors = vectors.double().numpy()
    np.savez_compressed(folder / f"{method}_train.npz", embeddings=vectors.astype(np.float32),
                        section=np.array([r.section for r in records]), domain=np.array([r.domain for r in records]),
                        attribute=np.array([attribute_string(r) for r in records]))
