"""JSON-lines training log: one object per step, appended and flushed as it goes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class JsonlLogger:
    """Append one JSON object per line. Non-finite floats are written as strings ("nan", "inf")."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._fh = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    @staticmethod
    def _clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value

    def log(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps({k: self._clean(v) for k, v in record.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_log(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines log back (for tests and reports)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
