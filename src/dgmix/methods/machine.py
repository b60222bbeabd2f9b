"""One machine type's clips and features, as the methods see them (train and test splits)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dgmix.data import ClipRecord, Dataset
from dgmix.errors import InputError, shown_path
from dgmix.features import FeatureParams
from dgmix.training.data import make_cache

log = logging.getLogger("dgmix.pipeline")


@dataclass
class MachineData:
    """Train and test clips of one machine type, with their features."""

    machine: str
    train: list[ClipRecord]
    test: list[ClipRecord]
    train_feats: list[np.ndarray]
    test_feats: list[np.ndarray]
    section_names: list[str]
    #: clips left out, as ``(path, split, reason)``: unreadable, or test clips of a section
    #: without training clips
    skipped: list[tuple[Path, str, str]] = field(default_factory=list)

    def sections(self, records: Sequence[ClipRecord]) -> np.ndarray:
        """Section index of each record (into ``section_names``)."""
        index = {s: i for i, s in enumerate(self.section_names)}
        return np.array([index[r.section] for r in records], dtype=np.int64)


def load_machine(ds: Dataset, machine: str, params: FeatureParams, cache_dir: Path, progress: bool,
                 on_error: str = "skip") -> MachineData:
    """The clips of ``machine`` in ``ds`` with their features; unreadable clips are skipped with a
    warning (``on_error="fail"``: the first one raises its InputError), and test sections without
    training clips are dropped. Every clip left out is in ``skipped``."""
    train = ds.select(machine=machine, split="train")
    test = ds.select(machine=machine, split="test")
    if not train:
        raise InputError(ds.root, f"no training clips for {machine}")
    cache = make_cache(cache_dir, params)
    report = cache.fill([r.path for r in train + test], workers=2, progress=progress)
    bad = {Path(p) for p, _ in report.errors}
    if report.errors and on_error == "fail":
        p, msg = report.errors[0]
        raise InputError(p, f"{msg} (--on-error fail)")
    split_of = {r.path: r.split for r in train + test}
    skipped = [(Path(p), split_of.get(Path(p), "?"), msg) for p, msg in report.errors]
    for p, msg in report.errors:  # on stderr, as every verb's skip lines
        print(f"skipped {shown_path(p)}: {msg}", file=sys.stderr, flush=True)
    train = [r for r in train if r.path not in bad]
    test = [r for r in test if r.path not in bad]
    if not train:
        raise InputError(ds.root, f"no readable training clip for {machine}")
    sections = sorted({r.section for r in train})
    unseen = sorted({r.section for r in test} - set(sections))
    if unseen:
        log.warning("%s: test sections %s have no training clips and are skipped", machine, unseen)
        skipped += [(r.path, "test", f"section {r.section} has no training clips") for r in test
                    if r.section not in sections]
        test = [r for r in test if r.section in sections]
    return MachineData(
        machine, train, test, [cache.get(r.path) for r in train], [cache.get(r.path) for r in test], sections,
        skipped,
    )
