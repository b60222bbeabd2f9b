"""Exception types. User-facing errors print as one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DgmixError(Exception):
    """Base class of every error dgmix raises on purpose."""


class InputError(DgmixError):
    """Bad input (a file or a value the user gave). ``str(e)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}")


class TrainingError(DgmixError):
    """A training run stopped on purpose (non-finite loss, ...)."""
