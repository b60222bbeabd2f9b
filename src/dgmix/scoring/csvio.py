"""Score, decision and ground-truth CSV files in the official DCASE 2022 formats.

* ``anomaly_score_<machine>_section_<XX>_test.csv``: rows ``filename,score``, no header, ``\\n``
  line ends, ``filename`` = the test clip's file name without its folder (the evaluator pairs rows
  with the ground truth by sorted file name). Scores are written with Python's shortest round-trip
  ``repr`` of the float.
* ``decision_result_<machine>_section_<XX>_test.csv``: rows ``filename,0|1`` (1 = anomaly).
* Ground truth (the evaluator's layout): ``DIR/ground_truth_data/ground_truth_<machine>_section_<XX>
  _test.csv`` (``filename,0|1``, 1 = anomaly) and ``DIR/ground_truth_domain/...`` (1 = target).
* Development-set names carry their labels: ``section_XX_{source|target}_test_{normal|anomaly}_...``
  and DCASE 2020's ``{normal|anomaly}_id_XX_...`` (source domain; also how ``dgmix run`` names the
  clips of MIMII 2019 and plain folder layouts, :attr:`dgmix.data.ClipRecord.score_name`)
  (:func:`labels_from_names`).

Readers raise :class:`dgmix.errors.InputError` naming the file and the line.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text

__all__ = [
    "GroundTruth",
    "decision_file_name",
    "find_score_files",
    "ground_truth_paths",
    "labels_from_names",
    "read_decisions",
    "read_ground_truth",
    "read_scores",
    "score_file_name",
    "section_id",
    "write_decisions",
    "write_scores",
]

SCORE_RE = re.compile(r"^anomaly_score_(?P<machine>.+)_section_(?P<section>\d{2})_test\.csv$")
DEV_NAME_RE = re.compile(
    r"section_(?P<section>\d{2})_(?P<domain>source|target)_test_(?P<label>normal|anomaly)_"
)
DCASE2020_NAME_RE = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d+)_.")


def section_id(section: int | str) -> str:
    """Normalise a section to two digits: ``0``, ``"0"``, ``"00"``, ``"section_00"`` -> ``"00"``."""
    s = str(section)
    s = s.removeprefix("section_")
    if not s.isdigit() or int(s) > 99:
        raise ValueError(f"section must be a number from 00 to 99, got {section!r}")
    return f"{int(s):02d}"


def score_file_name(machine: str, section: int | str) -> str:
    return f"anomaly_score_{machine}_section_{section_id(section)}_test.csv"


def decision_file_name(machine: str, section: int | str) -> str:
    return f"decision_result_{machine}_section_{section_id(section)}_test.csv"


def _rows_to_write(filenames: Sequence[str | Path], values: Sequence, what: str) -> list[str]:
    names = [Path(f).name for f in filenames]
    if len(names) != len(values):
        raise ValueError(f"{len(names)} file names but {len(values)} {what}")
    bad = [n for n in names if not n or any(c in n for c in ',"\r\n')]
    if bad:
        raise ValueError(f"file name {bad[0]!r} is empty or holds a comma, quote or line break")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"file name {dup!r} appears more than once")
    return names


def write_scores(
    out_dir: str | Path,
    machine: str,
    section: int | str,
    filenames: Sequence[str | Path],
    scores: Sequence[float] | np.ndarray,
) -> Path:
    """Write ``anomaly_score_<machine>_section_<XX>_test.csv``; returns its path."""
    vals = [float(v) for v in np.asarray(scores, dtype=float).reshape(-1)]
    names = _rows_to_write(filenames, vals, "scores")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("scores must be finite (NaN or infinite score found)")
    path = Path(out_dir) / score_file_name(machine, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(f"{n},{v!r}\n" for n, v in zip(names, vals, strict=True)))
    return path


def write_decisions(
    out_dir: str | Path,
    machine: str,
    section: int | str,
    filenames: Sequence[str | Path],
    decisions: Sequence[int] | np.ndarray,
) -> Path:
    """Write ``decision_result_<machine>_section_<XX>_test.csv`` (0/1 values); returns its path."""
    arr = np.asarray(decisions).reshape(-1)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("decisions must be 0 or 1")
    vals = [int(v) for v in arr]
    names = _rows_to_write(filenames, vals, "decisions")
    path = Path(out_dir) / decision_file_name(machine, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(f"{n},{v}\n" for n, v in zip(names, vals, strict=True)))
    return path


def _read_pairs(path: str | Path, what: str) -> tuple[list[str], list[tuple[int, str]]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found" if not p.exists() else "not a file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(p, f"cannot read the {what} file ({e})") from e
    names: list[str] = []
    vals: list[tuple[int, str]] = []
    seen: set[str] = set()
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise InputError(p, f"line {lineno}: expected 2 columns 'filename,value', got {len(row)}")
        name = row[0].strip()
        if not name:
            raise InputError(p, f"line {lineno}: empty file name")
        if name in seen:
            raise InputError(p, f"line {lineno}: file name {name!r} appears more than once")
        seen.add(name)
        names.append(name)
        vals.append((lineno, row[1].strip()))
    if not names:
        raise InputError(p, f"empty {what} file")
    return names, vals


def read_scores(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read an anomaly-score CSV: (file names in file order, float scores)."""
    names, vals = _read_pairs(path, "score")
    out = np.empty(len(vals))
    for i, (lineno, v) in enumerate(vals):
        try:
            out[i] = float(v)
        except ValueError:
            raise InputError(path, f"line {lineno}: score {v!r} is not a number") from None
        if not math.isfinite(out[i]):
            raise InputError(path, f"line {lineno}: score {v!r} is not finite")
    return names, out


def _read_binary(path: str | Path, what: str) -> tuple[list[str], np.ndarray]:
    names, vals = _read_pairs(path, what)
    out = np.empty(len(vals), dtype=np.int64)
    for i, (lineno, v) in enumerate(vals):
        try:
            f = float(v)
        except ValueError:
            f = math.nan
        if f not in (0.0, 1.0):
            raise InputError(path, f"line {lineno}: value {v!r} is not 0 or 1")
        out[i] = int(f)
    return names, out


def read_decisions(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a decision CSV: (file names, 0/1 int array)."""
    return _read_binary(path, "decision")


@dataclass(frozen=True)
class GroundTruth:
    """Labels of one section's test clips: names, ``is_anomaly`` (1 = anomaly), ``is_target``."""

    names: list[str]
    is_anomaly: np.ndarray
    is_target: np.ndarray

    def lookup(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}


def ground_truth_paths(gt_dir: str | Path, machine: str, section: int | str) -> tuple[Path, Path]:
    """(label file, domain file) paths of the evaluator's ground-truth layout."""
    base = f"ground_truth_{machine}_section_{section_id(section)}_test.csv"
    root = Path(gt_dir)
    return root / "ground_truth_data" / base, root / "ground_truth_domain" / base


def read_ground_truth(gt_dir: str | Path, machine: str, section: int | str) -> GroundTruth:
    """Read one section's ground truth from ``gt_dir`` (the evaluator's layout)."""
    data_path, dom_path = ground_truth_paths(gt_dir, machine, section)
    names, anom = _read_binary(data_path, "ground-truth")
    dnames, dom = _read_binary(dom_path, "ground-truth domain")
    dom = align_values(names, dnames, dom, dom_path, f"file names differ from {data_path.name} in ground_truth_data")
    return GroundTruth(names, anom, dom)


def align_values(names: list[str], other_names: list[str], values: np.ndarray, path: Path, problem: str) -> np.ndarray:
    """``values`` (listed in ``other_names`` order) reordered to ``names``; an InputError naming
    ``path`` with the counts of missing and extra names when the two sets differ."""
    if set(other_names) != set(names):
        missing = len(set(names) - set(other_names))
        extra = len(set(other_names) - set(names))
        raise InputError(path, f"{problem} ({missing} missing, {extra} extra)")
    pos = {n: i for i, n in enumerate(other_names)}
    return values[[pos[n] for n in names]]


def labels_from_names(names: Sequence[str], source: str | Path = "<names>") -> GroundTruth:
    """Labels from development-set names ``section_XX_{source|target}_test_{normal|anomaly}_...``
    or DCASE 2020 names ``{normal|anomaly}_id_XX_...`` (domain source: DCASE 2020 had no domains).

    Raises ``InputError(source, ...)`` naming the first file name without labels (e.g. evaluation
    set names ``section_03_0000.wav``, which need a ground-truth folder).
    """
    anom = np.empty(len(names), dtype=np.int64)
    dom = np.empty(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        m = DEV_NAME_RE.search(Path(n).name)
        m2020 = DCASE2020_NAME_RE.match(Path(n).name) if m is None else None
        if m is None and m2020 is None:
            raise InputError(
                source, f"file name {n!r} carries no domain/label (expected "
                "section_XX_{source|target}_test_{normal|anomaly}_... or "
                "{normal|anomaly}_id_XX_...); give the ground truth"
            )
        anom[i] = 1 if (m or m2020)["label"] == "anomaly" else 0
        dom[i] = 1 if m is not None and m["domain"] == "target" else 0
    return GroundTruth(list(names), anom, dom)


def find_score_files(scores_dir: str | Path) -> list[tuple[str, str, Path, Path | None]]:
    """All ``anomaly_score_*`` files in ``scores_dir``, sorted by machine then section.

    Returns ``(machine, section, score_path, decision_path_or_None)`` tuples.
    """
    root = Path(scores_dir)
    if not root.exists():
        raise InputError(root, "folder not found")
    if not root.is_dir():
        raise InputError(root, "not a folder")
    out = []
    for p in sorted(root.iterdir()):
        m = SCORE_RE.match(p.name)
        if m is None or not p.is_file():
            continue
        dec = root / decision_file_name(m["machine"], m["section"])
        out.append((m["machine"], m["section"], p, dec if dec.is_file() else None))
    out.sort(key=lambda t: (t[0], t[1]))
    return out
