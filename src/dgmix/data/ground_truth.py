"""Ground truth in the official DCASE evaluator's layout, and ``attributes_XX.csv``.

Ground truth (Kota-Dohi/dcase2022_evaluator)::

    GT/ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv    (1 = anomaly)
    GT/ground_truth_domain/ground_truth_<machine>_section_<XX>_test.csv  (1 = target)

with rows ``filename,0|1``.

No header; a first row whose second field is not ``0``/``1`` is taken as a header and skipped. The
score and decision files of :mod:`dgmix.scoring.csvio` are read with the same :func:`read_name_values`.

Attributes (DCASE 2022 format, one file per machine type and section, beside ``train/``/``test/``)::

    file_name,d1p,d1v,d2p,d2v,...
    bearing/train/section_00_source_train_normal_0000_vel_6_loc_A.wav,vel,6,loc,A

Each ``dNp`` column names an attribute and ``dNv`` holds its value; other columns are kept as
``column -> value``. Rows are matched to clips by file name (the last path component).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dgmix.errors import InputError

from .records import canonical_machine

_GT_FILE = re.compile(r"^ground_truth_(?P<machine>.+)_section_(?P<section>\d+)_test\.csv$", re.IGNORECASE)
_ATTR_FILE = re.compile(r"^attributes_(?P<section>\d+)\.csv$", re.IGNORECASE)
_ATTR_COL = re.compile(r"^d(?P<i>\d+)(?P<kind>[pv])$", re.IGNORECASE)

DATA_DIR = "ground_truth_data"
DOMAIN_DIR = "ground_truth_domain"


@dataclass
class GroundTruth:
    """Labels and domains by (machine, section, file name).

    Attributes:
        labels: ``(machine, section, file name) -> "normal" | "anomaly"``.
        domains: ``(machine, section, file name) -> "source" | "target"``.
    """

    labels: dict[tuple[str, str, str], str] = field(default_factory=dict)
    domains: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def update(self, other: GroundTruth) -> None:
        """Add ``other``'s entries (``other`` wins where both have one)."""
        self.labels.update(other.labels)
        self.domains.update(other.domains)

    def __len__(self) -> int:
        return len(set(self.labels) | set(self.domains))


def read_name_values(path: str | Path, what: str, header: bool = False) -> tuple[list[str], list[tuple[int, str]]]:
    """Read a two-column ``filename,value`` CSV: (names in file order, (line number, value text)).

    Blank rows are skipped; with ``header``, a first row whose value is not ``0``/``1`` is taken as
    a header. Raises :class:`InputError` naming the file (and the line) when the file is missing,
    unreadable or empty, or a row has not 2 columns, an empty or a repeated file name.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found" if not p.exists() else "not a file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(p, f"cannot read the {what} file ({e})") from e
    rows: dict[str, tuple[int, str]] = {}  # file name -> (line number, value text), in file order
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        row = [c.strip() for c in row]
        if not any(row) or (header and lineno == 1 and row[1:2] not in (["0"], ["1"])):
            continue
        if len(row) != 2:
            raise InputError(p, f"line {lineno}: expected 2 columns 'filename,value', got {len(row)}")
        if not row[0]:
            raise InputError(p, f"line {lineno}: empty file name")
        if row[0] in rows:
            raise InputError(p, f"line {lineno}: file name {row[0]!r} appears more than once")
        rows[row[0]] = (lineno, row[1])
    if not rows:
        raise InputError(p, f"empty {what} file")
    return list(rows), list(rows.values())


def read_flags(path: str | Path, what: str, header: bool = False) -> tuple[list[str], np.ndarray]:
    """:func:`read_name_values` for ``filename,0|1`` files: (names, int64 0/1 array)."""
    names, vals = read_name_values(path, what, header)
    flags = np.empty(len(vals), dtype=np.int64)
    for i, (lineno, v) in enumerate(vals):
        try:
            flags[i] = {0.0: 0, 1.0: 1}[float(v)]
        except (ValueError, KeyError):
            raise InputError(path, f"line {lineno}: value {v!r} is not 0 or 1") from None
    return names, flags


def read_ground_truth(gt_dir: str | Path) -> GroundTruth:
    """Read every ground-truth CSV under ``gt_dir``.

    ``gt_dir`` may be the folder that holds ``ground_truth_data/`` and ``ground_truth_domain/``,
    or one of those two folders itself (its sibling is then read too when it exists).

    Raises:
        InputError: If ``gt_dir`` is missing, holds no ground-truth files, or a file is malformed.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "ground-truth folder not found")
    if gt_dir.name.lower() in (DATA_DIR, DOMAIN_DIR):
        gt_dir = gt_dir.parent
    gt = GroundTruth()
    for sub, target, values in ((DATA_DIR, gt.labels, ("normal", "anomaly")),
                                (DOMAIN_DIR, gt.domains, ("source", "target"))):
        for csv_path in sorted((gt_dir / sub).glob("*")):  # nothing when the folder is missing
            m = _GT_FILE.match(csv_path.name)
            if m is None or not csv_path.is_file():
                continue
            key = (canonical_machine(m["machine"]), f"{int(m['section']):02d}")
            for name, flag in zip(*read_flags(csv_path, "ground-truth", header=True)):
                target[(*key, Path(name).name)] = values[flag]
    if not len(gt):  # every ground-truth file holds at least one row
        raise InputError(gt_dir,
                         f"no ground truth found (expected {DATA_DIR}/ground_truth_<machine>_section_<XX>_test.csv)")
    return gt


def read_attributes_csv(path: str | Path) -> dict[str, dict[str, str]]:
    """Read one DCASE ``attributes_XX.csv``: file name -> attribute dict (see module docstring).

    Raises:
        InputError: If the file cannot be read or has no ``file_name`` column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(path, f"cannot read attributes: {e}") from e
    if "file_name" not in header:
        raise InputError(path, f"no 'file_name' column in header {','.join(header)!r}")
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        name = row.pop("file_name", "")
        if not name:
            continue
        attrs: dict[str, str] = {}
        for col, val in row.items():
            m = _ATTR_COL.match(col)
            if val and m is None:  # a column of its own
                attrs[col] = val
            elif val and m["kind"].lower() == "p":  # dNp names an attribute, dNv holds its value
                attrs[val] = row.get(f"d{m['i']}v", "")
        out[Path(name.replace("\\", "/")).name] = attrs
    return out


def attribute_files(paths: Iterable[Path]) -> list[Path]:
    """The ``attributes_XX.csv`` files among ``paths``."""
    return [p for p in paths if _ATTR_FILE.match(p.name)]
