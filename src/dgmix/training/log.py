"""JSON-lines training log: one object per step, each line appended whole (:mod:`dgmix.io_atomic`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dgmix.io_atomic import append_line, atomic_write_text, read_lines


class JsonlLogger:
    """Append one JSON object per line. Non-finite floats are written as strings ("nan", "inf").

    ``keep_until_step``: what to do with an existing log. ``None`` (a fresh run) starts it empty;
    an integer (a resumed run) keeps the rows up to that step, the checkpoint's, and drops the
    later ones that the interrupted run wrote after it, so a resumed run's log equals an
    uninterrupted one's. A cut last line is dropped either way.
    """

    def __init__(self, path: Path, enabled: bool = True, keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = []
            if keep_until_step is not None and self.path.is_file():
                kept = [line for line in read_lines(self.path)
                        if line.strip() and int(json.loads(line).get("step", 0)) <= keep_until_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    @staticmethod
    def _clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_line(self.path, json.dumps({k: self._clean(v) for k, v in record.items()}))

    def close(self) -> None:
        """Nothing is held open (each line is its own write); kept for the loop's ``finally``."""


def read_log(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines log back (for tests and reports); a cut last line is ignored."""
    return [json.loads(line) for line in read_lines(path) if line.strip()]
