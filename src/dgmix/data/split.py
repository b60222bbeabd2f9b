"""A seeded train/test split for layouts that ship none (MIMII 2019, plain ``<machine>/{normal,anomaly}``).

MIMII 2019 (``<machine>/id_XX/{normal,abnormal}/``) and the plain ``<machine>/{normal,anomaly}/``
layout give every clip a label but no split, so without one nothing could be trained on them. The
default follows the evaluation protocol of the MIMII paper (Purohit et al., DCASE 2019 Workshop,
§4): per machine type and machine ID, *all* anomalous clips plus as many normal clips form the
test set and the remaining normal clips train. DCASE 2020 Task 2 built its development set from
MIMII the same way, with the machine ID as the section, which is what this package does too.

Interpretation (documented here, config ``split.*``): when a group has fewer than twice as many
normal clips as anomalous ones, the protocol would leave (almost) nothing to train on, so the
default takes at most :data:`MAX_TEST_FRACTION` (0.5, a constant) of the normal clips into the test set. The real
MIMII release (e.g. fan id_00: 1011 normal, 407 abnormal clips) is never capped; a 10 + 10 sample
is (5 normal clips test, 5 train).

Which normal clips go to the test set is a seeded draw: the group's normal clips sorted by their
path relative to the dataset root, permuted by ``numpy.random.default_rng([seed, crc32(key)])``
with ``key = "<machine>/<section>"``. The split therefore depends only on the seed, the file names
and the folder layout, not on where the dataset lives, the order of the disk listing, or the run's
training seed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text

from .records import ClipRecord

__all__ = ["GroupSplit", "SplitConfig", "assign_split", "parse_test_normals", "split_lines", "write_split_csv"]

#: Columns of ``split.csv`` in a run directory.
SPLIT_CSV_COLUMNS = ("path", "machine", "section", "domain", "split", "label", "split_from", "score_name")
#: Cap of ``test_normals: match``: at most this fraction of a group's normal clips go to the test set.
MAX_TEST_FRACTION = 0.5

@dataclass
class SplitConfig:
    """How clips without a train/test split are divided (module docstring; config ``split``).

    Attributes:
        test_normals: Normal clips per machine type and ID that go to the test set: ``"match"``
            (default: as many as the group has anomalous clips, the MIMII protocol, capped at
            :data:`MAX_TEST_FRACTION` of them), an integer count, or a fraction in (0, 1) of the group's
            normal clips. A count or fraction is used as given (no cap), but at least one normal
            clip always stays for training.
        seed: Seed of the draw of the test normals (independent of the run's ``seed``).
    """

    test_normals: int | float | Literal["match"] = "match"
    seed: int = 0

    def __post_init__(self) -> None:
        check_test_normals(self.test_normals, "split.test_normals")

    def describe(self) -> str:
        """One phrase for printouts: ``test_normals=match (at most 50 % of the normals), seed 0``."""
        cap = f" (at most {100 * MAX_TEST_FRACTION:g} % of the normals)" if self.test_normals == "match" else ""
        return f"test_normals={self.test_normals}{cap}, seed {self.seed}"


def check_test_normals(value: object, where: str = "--test-normals") -> None:
    """Raise :class:`InputError` unless ``value`` is ``"match"``, an integer >= 0 or a fraction in (0, 1)."""
    if value != "match" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InputError(where, f"expected match, a count N or a fraction in (0, 1), got {value!r}")
    if isinstance(value, int) and value < 0:
        raise InputError(where, f"a count must be >= 0, got {value}")
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise InputError(where, f"a fraction must be in (0, 1) (write a count as an integer), got {value!r}")


def parse_test_normals(text: str) -> int | float | str:
    """Parse ``--test-normals``: ``match``, an integer count (``10``) or a fraction (``0.3``)."""
    value: int | float | str = text.strip()
    if value.lower() == "match":
        return "match"
    for number in (int, float):
        try:
            value = number(value)
            break
        except ValueError:
            pass
    check_test_normals(value)  # rejects text that is no number with the one-line message
    return value


@dataclass(frozen=True)
class GroupSplit:
    """The split of one machine type and ID (section): counts, for ``dgmix data`` and ``split.csv``."""

    machine: str
    section: str
    normal: int
    anomaly: int
    test_normal: int
    capped: bool

    @property
    def train_normal(self) -> int:
        return self.normal - self.test_normal


def relative_path(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies below it (POSIX separators), else as given."""
    return (path.relative_to(root) if root is not None and path.is_relative_to(root) else path).as_posix()


def _n_test_normals(cfg: SplitConfig, machine: str, section: str, n_normal: int, n_anomaly: int, source: str
                    ) -> tuple[int, bool]:
    """(normal clips to test, whether the ``match`` cap applied)."""
    tn = cfg.test_normals
    if tn == "match":
        cap = int(np.floor(n_normal * MAX_TEST_FRACTION))
        return min(n_anomaly, cap), n_anomaly > cap
    if isinstance(tn, float):
        return min(int(round(tn * n_normal)), max(n_normal - 1, 0)), False
    if n_normal and tn >= n_normal:
        raise InputError(source, f"{machine} id {section}: test_normals={tn} leaves no normal clip to train "
                                 f"on ({n_normal} normal clips); give a smaller count or a fraction")
    return min(tn, n_normal), False


def assign_split(records: Sequence[ClipRecord], cfg: SplitConfig, root: Path | None = None
                 ) -> tuple[list[ClipRecord], list[GroupSplit]]:
    """Give each record whose layout has no split (``split_given`` false) a ``train``/``test`` split.

    Records that carry a split are returned unchanged. Returns the records (same order) and one
    :class:`GroupSplit` per machine type and section that was split, sorted.

    Raises:
        InputError: an integer ``test_normals`` that is not smaller than a group's normal clips.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        if not r.split_given:
            groups.setdefault((r.machine, r.section), []).append(i)
    out = list(records)
    summary: list[GroupSplit] = []
    for (machine, section), idx in sorted(groups.items()):
        normal = sorted((i for i in idx if records[i].label == "normal"),
                        key=lambda i: relative_path(records[i].path, root))
        anomaly = [i for i in idx if records[i].label != "normal"]
        k, capped = _n_test_normals(cfg, machine, section, len(normal), len(anomaly),
                                    str(root) if root is not None else "split")
        order = np.random.default_rng([cfg.seed, zlib.crc32(f"{machine}/{section}".encode())]).permutation(len(normal))
        test = {normal[j] for j in order[:k]} | set(anomaly)
        for i in idx:
            out[i] = dataclasses.replace(records[i], split="test" if i in test else "train")
        summary.append(GroupSplit(machine, section, len(normal), len(anomaly), k, capped))
    return out, summary


def split_lines(splits: Sequence[GroupSplit], cfg: SplitConfig) -> list[str]:
    """What ``dgmix data`` and ``dgmix run`` print about the seeded split (nothing if none was drawn)."""
    if not splits:
        return []
    lines = [f"split: {len(splits)} machine type/ID group(s) have no train/test split in their layout; "
             f"seeded split ({cfg.describe()}):"]
    for g in splits:
        note = (f" (capped: {g.anomaly} anomalous clips but at most "
                f"{100 * MAX_TEST_FRACTION:g} % of {g.normal} normal clips go to the test set)"
                if g.capped else "")
        lines.append(f"  {g.machine} id {g.section}: test = {g.anomaly} anomalous + {g.test_normal} of "
                     f"{g.normal} normal clips; train = {g.train_normal} normal clips{note}")
    return lines


def split_csv_text(records: Sequence[ClipRecord], root: Path | None = None) -> str:
    """The text of ``split.csv`` (columns :data:`SPLIT_CSV_COLUMNS`): every record's split.

    ``path`` is relative to ``root`` when the clip lies below it; ``split_from`` is ``layout`` (the
    name or folders gave the split) or ``seeded`` (:func:`assign_split` drew it); ``score_name`` is
    the clip's name in the score and decision CSVs.
    """
    fh = io.StringIO()
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(SPLIT_CSV_COLUMNS)
    for r in records:
        w.writerow([relative_path(r.path, root), r.machine, r.section, r.domain, r.split, r.label,
                    "layout" if r.split_given else "seeded", r.score_name])
    return fh.getvalue()


def write_split_csv(path: Path, records: Sequence[ClipRecord], root: Path | None = None) -> Path:
    """Write :func:`split_csv_text` to ``path``."""
    return atomic_write_text(path, split_csv_text(records, root))
