"""Watch a folder: score each clip that lands in it once, and log every score as one JSON line.

This is what ``dgmix watch DETECTOR FOLDER --log FILE`` runs. The folder is *polled* (every
``interval`` seconds, recursively) rather than followed with file-system events: polling works the
same on every platform and on network shares (NFS, SMB), where inotify-style events do not arrive,
and a recorder that writes one clip every few seconds needs no faster reaction.

When is a clip complete? A recorder or a copy writes a file over some time, and scoring it half
written would score a cut clip. A clip is taken once its size and modification time have stayed the
same for ``settle`` seconds (seen by two polls that far apart, or its modification time is already
that old when it is first seen, as for clips that were there before the watch began). A writer that
pauses longer than ``settle`` in the middle of a file defeats this; such a writer should write to a
hidden name (``.clip.wav``) or to ``clip.wav.part`` / ``clip.wav.tmp`` and rename the file when it is
complete: names starting with ``.`` and files ending in ``.part`` / ``.tmp`` are never read.

The log (``--log``) is the watch's memory. Each line is one clip: ``time`` (UTC, ISO 8601, when it
was scored), ``file`` (relative to the folder), ``size`` and ``mtime_ns`` (of the version scored),
then ``section``, ``score``, ``threshold``, ``p_value``, ``decision`` (1 = alarm), ``bands_hz`` and
``times_s`` (the explanation's strongest mel bands and times, :mod:`dgmix.scoring.explain`),
``method`` and ``machine``; a clip that cannot be scored gets a line with ``error`` instead of the
score. On a restart every clip already in the log with the same size and modification time is
skipped, scored or not (a bad file is not retried until it changes); a clip that changed since is
scored again and logged again. Lines are appended whole (:func:`dgmix.io_atomic.append_line`); a
line cut by a kill is ignored with a warning (its clip is scored again) and closed with a newline
so that the next line is whole.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dgmix.errors import InputError, shown_path

__all__ = ["WatchOptions", "WatchSummary", "Watcher", "alarm_line", "is_watched_name", "read_log", "summary_line"]

#: suffixes of files that are still being written by the usual convention, never read
PARTIAL_SUFFIXES = (".part", ".tmp")


def is_watched_name(rel: Path) -> bool:
    """Whether a file below the watched folder (``rel``, relative to it) is a clip to score: a
    clip extension (:data:`dgmix.data.discover.CLIP_EXTENSIONS`), no part of the path hidden."""
    from dgmix.data.discover import CLIP_EXTENSIONS

    if any(part.startswith(".") for part in rel.parts):
        return False
    name = rel.name.lower()
    return not name.endswith(PARTIAL_SUFFIXES) and rel.suffix.lower() in CLIP_EXTENSIONS


@dataclass(frozen=True)
class WatchOptions:
    """``interval``: seconds between polls; ``settle``: seconds a clip's size and modification time
    must stay unchanged before it is scored; ``max_files``: stop after logging this many clips
    (scored or not; ``None``: no limit); ``timeout``: stop after this many seconds (``None``: never);
    ``section`` / ``channel`` / ``pad`` / ``allow_silence``: as for ``dgmix score``.

    Every clip's strongest bands and times are logged (a ``detector.pt``; an ONNX detector logs
    scores only): the explanation comes from the scoring pass and adds about 1.5 ms per clip to a
    ``logmel`` detector's 3 ms and 14 ms to a ``random`` one's 16 ms on 2 cores, too little to be
    worth a switch for clips that arrive seconds apart."""

    interval: float = 1.0
    settle: float = 2.0
    max_files: int | None = None
    timeout: float | None = None
    section: str | None = None
    channel: int | None = None
    pad: bool | None = None
    allow_silence: bool | None = None

    def __post_init__(self) -> None:
        for name in ("interval", "settle"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise InputError(f"--{name}", f"must be a number of seconds >= 0, got {v!r}")
        if self.interval == 0:
            raise InputError("--interval", "must be > 0 seconds")
        if self.max_files is not None and self.max_files < 1:
            raise InputError("--max-files", f"must be >= 1, got {self.max_files}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise InputError("--timeout", f"must be > 0 seconds, got {self.timeout}")


@dataclass
class WatchSummary:
    """What one watch did: clips scored, alarms among them, clips that could not be scored."""

    scored: int = 0
    alarms: int = 0
    skipped: int = 0

    @property
    def logged(self) -> int:
        return self.scored + self.skipped


@dataclass
class _Seen:
    """A file's last observed version and when (monotonic seconds) it was first seen so."""

    size: int
    mtime_ns: int
    since: float


def read_log(path: Path, warn: Callable[[str], None] | None = None) -> dict[str, tuple[int, int]]:
    """``{file: (size, mtime_ns)}`` of the clips a watch log holds (the last line of each file wins).

    A missing log is empty. A line that is not a JSON object with ``file``, ``size`` and ``mtime_ns``
    (a line cut by a kill, or text someone added) is ignored, with a warning through ``warn``.
    Raises InputError when the log exists but cannot be read as text.
    """
    if not path.exists():
        return {}
    if path.is_dir():
        raise InputError(path, "is a folder; --log needs a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read it as a watch log ({exc})") from None
    done: dict[str, tuple[int, int]] = {}
    bad = 0
    lines = text.split("\n")
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            done[str(entry["file"])] = (int(entry["size"]), int(entry["mtime_ns"]))
        except (ValueError, KeyError, TypeError):
            bad += 1
    if bad and warn is not None:
        warn(f"warning: {shown_path(path)}: {bad} line(s) are not watch-log entries (a line cut when a watch was "
             f"killed?); ignored, their clips are scored again")
    return done


def _close_cut_line(path: Path) -> None:
    """End the log with a newline if a kill cut its last line, so that the next line is whole."""
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if last != b"\n":
            with open(path, "ab") as fh:
                fh.write(b"\n")


class Watcher:
    """Score the clips that land in ``folder`` with ``detector`` (a loaded ``detector.pt`` or ONNX
    detector, :func:`dgmix.scoring.clips.load_detector`), logging each to ``log``.

    ``echo`` prints alarm lines (stdout), ``echo_err`` the one-line errors and warnings (stderr).
    :meth:`poll` does one scan at given times, for callers that keep the clock; :meth:`run` loops.
    """

    def __init__(self, detector: Any, folder: Path, log: Path, options: WatchOptions,
                 echo: Callable[[str], None] = print, echo_err: Callable[[str], None] = print) -> None:
        self.detector = detector
        self.folder = Path(folder)
        self.log = Path(log)
        self.options = options
        self.echo = echo
        self.echo_err = echo_err
        self.summary = WatchSummary()
        if not self.folder.is_dir():
            raise InputError(self.folder, "no such folder" if not self.folder.exists() else "is not a folder")
        self.done = read_log(self.log, echo_err)
        self._seen: dict[str, _Seen] = {}
        from dgmix.scoring.detector import Detector

        self._explain = isinstance(detector, Detector)  # an ONNX graph gives the score only

    @property
    def finished(self) -> bool:
        """Whether ``max_files`` clips have been logged in this watch."""
        m = self.options.max_files
        return m is not None and self.summary.logged >= m

    def _candidates(self) -> list[tuple[str, Path, os.stat_result]]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                rel = path.relative_to(self.folder)
                if not is_watched_name(rel):
                    continue
                try:
                    st = path.stat()
                except OSError:  # gone between the listing and the stat
                    continue
                if path.resolve() == self.log.resolve():
                    continue
                out.append((rel.as_posix(), path, st))
        return out

    def poll(self, now: float | None = None, wall: float | None = None) -> int:
        """One scan: score every clip that has settled and is not logged in this version.

        ``now`` is monotonic seconds (default ``time.monotonic()``), ``wall`` the epoch seconds the
        modification times are compared with (default ``time.time()``). Returns the clips logged.
        """
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        settle = self.options.settle
        logged = 0
        present = set()
        for key, path, st in self._candidates():
            present.add(key)
            version = (st.st_size, st.st_mtime_ns)
            if self.done.get(key) == version:
                continue
            seen = self._seen.get(key)
            if seen is None or (seen.size, seen.mtime_ns) != version:
                seen = self._seen[key] = _Seen(st.st_size, st.st_mtime_ns, now)
            settled = now - seen.since >= settle or wall - st.st_mtime_ns / 1e9 >= settle
            if not settled:
                continue
            if self.finished:
                break
            if self._handle(key, path, version):
                logged += 1
        for key in set(self._seen) - present:  # deleted before it settled
            del self._seen[key]
        return logged

    def _handle(self, key: str, path: Path, version: tuple[int, int]) -> bool:
        """Score one settled clip and log it; ``False`` when it changed or vanished meanwhile."""
        from dgmix.scoring.clips import score_clip

        o = self.options
        entry: dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "file": key, "size": version[0], "mtime_ns": version[1]}
        try:
            res = score_clip(self.detector, path, o.section, channel=o.channel, pad=o.pad,
                             allow_silence=o.allow_silence, explain=self._explain)
        except InputError as exc:
            res = None
            error = exc
        try:
            st = path.stat()
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns) != version:  # written to while it was scored: wait for it again
            return False
        if res is None:
            self.echo_err(f"skipped {error}")
            entry["error"] = error.problem
            self.summary.skipped += 1
        else:
            bands = res.explanation.bands_hz if res.explanation is not None else []
            times = res.explanation.times_s if res.explanation is not None else []
            entry |= {"section": res.section, "score": res.score, "threshold": res.threshold,
                      "p_value": res.p_value, "decision": res.decision,
                      "bands_hz": [[round(float(lo)), round(float(hi))] for lo, hi in bands],
                      "times_s": [round(float(t), 3) for t in times],
                      "method": self.detector.method, "machine": self.detector.machine}
            self.summary.scored += 1
            if res.decision == 1:
                self.summary.alarms += 1
                self.echo(alarm_line(key, res))
        from dgmix.io_atomic import append_line

        append_line(self.log, json.dumps(entry, allow_nan=False))
        self.done[key] = version
        return True

    def run(self, sleep: Callable[[float], None] = time.sleep) -> WatchSummary:
        """Poll until ``max_files`` clips are logged or ``timeout`` seconds have passed (or forever);
        a ``KeyboardInterrupt`` ends the watch like the limits do. Returns the summary."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        _close_cut_line(self.log)
        start = time.monotonic()
        deadline = None if self.options.timeout is None else start + self.options.timeout
        try:
            while True:
                self.poll()
                if self.finished:
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = self.options.interval if deadline is None else min(self.options.interval, deadline - now)
                sleep(max(wait, 0.0))
        except KeyboardInterrupt:
            pass
        return self.summary


def alarm_line(key: str, res: Any) -> str:
    """``ALARM <file> score S (threshold T, p=P) bands LO-HI;... Hz at T1;... s`` for one alarm."""
    p = "-" if res.p_value is None else f"{res.p_value:.4g}"
    line = f"ALARM {key} score {res.score:.6g} (threshold {res.threshold:.6g}, p={p})"
    if res.explanation is not None:
        bands, times = res.explanation.csv_fields()
        if bands:
            line += f" bands {bands} Hz"
        if times:
            line += f" at {times} s"
    return line


def summary_line(folder: Path, s: WatchSummary) -> str:
    return f"watched {shown_path(folder)}: {s.scored} clip(s) scored, {s.alarms} alarm(s), {s.skipped} skipped"

