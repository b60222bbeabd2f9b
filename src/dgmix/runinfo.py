"""What a run records about itself, beside its results: ``run_info.json`` (what the run is on, from
its start; each stage's wall time and peak RSS at its end), ``skipped.csv`` (every clip left out,
with the reason), and the check that ``--resume`` continues on the clips the run started with."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dgmix.data import ClipRecord
from dgmix.data.split import relative_path, split_csv_text
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text

__all__ = ["RUN_INFO", "SKIPPED_CSV", "StageClock", "check_same_split", "peak_rss_mb", "record_run_stage",
           "write_skipped"]

#: What the run was (read by ``dgmix report``).
RUN_INFO = "run_info.json"


def peak_rss_mb() -> float | None:
    """This process's peak resident set size so far, in MB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1e6 if sys.platform == "darwin" else 1e3), 1)  # bytes on macOS, KiB on Linux


class StageClock:
    """Wall time and peak RSS of each stage of a run, for ``run_info.json``'s ``stages``.

    ``stages[machine]["features"]`` and ``stages[machine][method][stage]`` (in ``run_info.json``:
    ``stages.machines``; stages after the pipeline, such as ``report``, sit beside it) (stage: ``train``,
    ``detector`` (the scoring choice and the fit of the back end), ``score``, ``outputs``) each hold
    ``seconds`` and ``peak_rss_mb``, the process's peak RSS when the stage ended (a peak, so it
    only grows; the stage that raised it is the one that needed the memory).
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, Any]] = {}
        self._t = time.perf_counter()

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, machine: str, stage: str, method: str | None = None) -> float:
        now = time.perf_counter()
        seconds, self._t = now - self._t, now
        where = self.stages.setdefault(machine, {})
        if method is not None:
            where = where.setdefault(method, {})
        where[stage] = {"seconds": round(seconds, 3), "peak_rss_mb": peak_rss_mb()}
        return seconds


def record_run_stage(out: Path, stage: str, seconds: float) -> None:
    """Add a stage that ran after the pipeline (the report) to ``run_info.json``'s ``stages``."""
    path = Path(out) / RUN_INFO
    info = json.loads(path.read_text())
    info.setdefault("stages", {})[stage] = {"seconds": round(seconds, 3), "peak_rss_mb": peak_rss_mb()}
    info["peak_rss_mb"] = peak_rss_mb()
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")


#: the clips a run left out, with the reason (written only when there are some)
SKIPPED_CSV = "skipped.csv"


def write_skipped(path: Path, rows: Sequence[tuple[Path, str, str, str]], root: Path) -> None:
    """``skipped.csv``: ``path,machine,split,reason`` of every clip left out (removed when none);
    paths relative to ``root`` as in split.csv, names that are not UTF-8 backslash-escaped."""
    if not rows:
        path.unlink(missing_ok=True)
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "machine", "split", "reason"])
    for p, machine, split, reason in rows:
        w.writerow([_utf8(relative_path(Path(p), root)), machine, split, _utf8(reason)])
    atomic_write_text(path, buf.getvalue())


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_same_split(path: Path, records: Sequence[ClipRecord], root: Path) -> None:
    """``--resume`` on data whose clips or split differ from the run's ``split.csv``: refused."""
    old, new = path.read_text().splitlines()[1:], split_csv_text(records, root).splitlines()[1:]
    if old != new:
        gone, added = len(set(old) - set(new)), len(set(new) - set(old))
        raise InputError("--resume", f"the data's clips changed since the run started ({len(old)} clips then, "
                         f"{len(new)} now: {gone} gone or changed, {added} new or changed; split.csv has the old "
                         "list); start a new run (--overwrite or another --out)")
