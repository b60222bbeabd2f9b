"""Score, decision and ground-truth CSV files in the official DCASE 2022 formats.

* ``anomaly_score_<machine>_section_<XX>_test.csv``: rows ``filename,score``, no header, ``\\n``
  line ends, ``filename`` = the test clip's file name without its folder (the evaluator pairs rows
  with the ground truth by sorted file name). Scores are written with Python's shortest round-trip
  ``repr`` of the float.
* ``decision_result_<machine>_section_<XX>_test.csv``: rows ``filename,0|1`` (1 = anomaly).
* ``p_value_<machine>_section_<XX>_test.csv`` (ours, not DCASE's): rows ``filename,p``, each
  score's conformal p-value against the section's normal training clips.
* Ground truth (the evaluator's layout): ``DIR/ground_truth_data/ground_truth_<machine>_section_<XX>
  _test.csv`` (``filename,0|1``, 1 = anomaly) and ``DIR/ground_truth_domain/...`` (1 = target).
* Development-set names carry their labels: ``section_XX_{source|target}_test_{normal|anomaly}_...``
  and DCASE 2020's ``{normal|anomaly}_id_XX_...`` (source domain; also how ``dgmix run`` names the
  clips of MIMII 2019 and plain folder layouts, :attr:`dgmix.data.ClipRecord.score_name`)
  (:func:`labels_from_names`).

Readers (:func:`dgmix.data.ground_truth.read_name_values`) raise :class:`dgmix.errors.InputError` naming
the file and the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgmix.data.ground_truth import read_flags, read_name_values
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text

__all__ = ["GroundTruth", "decision_file_name", "find_score_files", "ground_truth_paths", "labels_from_names",
           "p_value_file_name",
           "read_decisions", "read_ground_truth", "read_scores", "score_file_name", "section_id", "write_decisions",
           "write_p_values", "write_scores"]

SCORE_RE = re.compile(r"^anomaly_score_(?P<machine>.+)_section_(?P<section>\d{2})_test\.csv$")
DEV_NAME_RE = re.compile(r"section_(?P<section>\d{2})_(?P<domain>source|target)_test_(?P<label>normal|anomaly)_")
DCASE2020_NAME_RE = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d+)_.")


def section_id(section: int | str) -> str:
    """Normalise a section to two digits: ``0``, ``"0"``, ``"00"``, ``"section_00"`` -> ``"00"``."""
    s = str(section).removeprefix("section_")
    if not s.isdigit() or int(s) > 99:
        raise ValueError(f"section must be a number from 00 to 99, got {section!r}")
    return f"{int(s):02d}"


def score_file_name(machine: str, section: int | str) -> str:
    return f"anomaly_score_{machine}_section_{section_id(section)}_test.csv"


def decision_file_name(machine: str, section: int | str) -> str:
    return f"decision_result_{machine}_section_{section_id(section)}_test.csv"


def _write(path: Path, filenames: Sequence[str | Path], values: list, what: str) -> Path:
    """Write ``filename,value`` rows (``repr`` of each value) to ``path``; returns it."""
    names = [Path(f).name for f in filenames]
    if len(names) != len(values):
        raise ValueError(f"{len(names)} file names but {len(values)} {what}")
    bad = [n for n in names if not n or any(c in n for c in ',"\r\n')]
    if bad:
        raise ValueError(f"file name {bad[0]!r} is empty or holds a comma, quote or line break")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"file name {dup!r} appears more than once")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, "".join(f"{n},{v!r}\n" for n, v in zip(names, values, strict=True)))


def write_scores(
    out_dir: str | Path, machine: str, section: int | str, filenames: Sequence[str | Path],
    scores: Sequence[float] | np.ndarray,
) -> Path:
    """Write ``anomaly_score_<machine>_section_<XX>_test.csv``; returns its path."""
    vals = [float(v) for v in np.asarray(scores, dtype=float).reshape(-1)]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("scores must be finite (NaN or infinite score found)")
    return _write(Path(out_dir) / score_file_name(machine, section), filenames, vals, "scores")


def write_decisions(
    out_dir: str | Path, machine: str, section: int | str, filenames: Sequence[str | Path],
    decisions: Sequence[int] | np.ndarray,
) -> Path:
    """Write ``decision_result_<machine>_section_<XX>_test.csv`` (0/1 values); returns its path."""
    arr = np.asarray(decisions).reshape(-1)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("decisions must be 0 or 1")
    return _write(Path(out_dir) / decision_file_name(machine, section), filenames, [int(v) for v in arr], "decisions")


def p_value_file_name(machine: str, section: int | str) -> str:
    return f"p_value_{machine}_section_{section_id(section)}_test.csv"


def write_p_values(
    out_dir: str | Path, machine: str, section: int | str, filenames: Sequence[str | Path],
    p_values: Sequence[float] | np.ndarray,
) -> Path:
    """Write ``p_value_<machine>_section_<XX>_test.csv`` (rows ``filename,p``; not an official file:
    the conformal p-value of each score, :mod:`dgmix.scoring.conformal`); returns its path."""
    vals = [float(v) for v in np.asarray(p_values, dtype=float).reshape(-1)]
    return _write(Path(out_dir) / p_value_file_name(machine, section), filenames, vals, "p-values")


def read_scores(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read an anomaly-score CSV: (file names in file order, float scores)."""
    names, vals = read_name_values(path, "score")
    out = np.empty(len(vals))
    for i, (lineno, v) in enumerate(vals):
        try:
            out[i] = float(v)
        except ValueError:
            raise InputError(path, f"line {lineno}: score {v!r} is not a number") from None
        if not math.isfinite(out[i]):
            raise InputError(path, f"line {lineno}: score {v!r} is not finite")
    return names, out


def read_decisions(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a decision CSV: (file names, 0/1 int array)."""
    return read_flags(path, "decision")


@dataclass(frozen=True)
class GroundTruth:
    """Labels of one section's test clips: names, ``is_anomaly`` (1 = anomaly), ``is_target``."""

    names: list[str]
    is_anomaly: np.ndarray
    is_target: np.ndarray

    def for_names(self, names: Sequence[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(``is_anomaly``, ``is_target``) in the order of ``names`` (a score file's rows); an
        InputError naming ``path`` when ``names`` are not exactly the ground truth's clips."""
        have, known = set(names), set(self.names)
        missing = [n for n in self.names if n not in have]
        extra = [n for n in names if n not in known]
        if missing or extra:
            raise InputError(path, f"file names do not match the ground truth: {len(missing)} ground-truth clips "
                             f"missing, {len(extra)} names not in the ground truth (e.g. {(extra or missing)[0]!r})")
        pos = {n: i for i, n in enumerate(self.names)}
        order = [pos[n] for n in names]
        return self.is_anomaly[order], self.is_target[order]


def ground_truth_paths(gt_dir: str | Path, machine: str, section: int | str) -> tuple[Path, Path]:
    """(label file, domain file) paths of the evaluator's ground-truth layout."""
    base = f"ground_truth_{machine}_section_{section_id(section)}_test.csv"
    root = Path(gt_dir)
    return root / "ground_truth_data" / base, root / "ground_truth_domain" / base


def read_ground_truth(gt_dir: str | Path, machine: str, section: int | str) -> GroundTruth:
    """Read one section's ground truth from ``gt_dir`` (the evaluator's layout)."""
    data_path, dom_path = ground_truth_paths(gt_dir, machine, section)
    names, anom = read_flags(data_path, "ground-truth")
    dnames, dom = read_flags(dom_path, "ground-truth domain")
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
