"""Exception types. User-facing errors print as one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path) -> str:
    """A path as text that always prints: bytes that are not UTF-8 (which Python keeps as
    surrogate escapes, e.g. a file name holding byte 0xff) are written as ``\\xff``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def undecodable_name(path: str | Path) -> str | None:
    """The problem with a file name that is not valid UTF-8 (naming its bytes), or ``None``.

    dgmix skips such files in every verb: their names cannot be written into the
    official UTF-8 score CSVs, and an escaped name would no longer match the file."""
    name = Path(path).name
    if shown_path(name) == name:
        return None
    raw = name.encode("utf-8", "surrogateescape")
    return (f"file name is not valid UTF-8 (bytes {raw!r}); rename the file to use it "
            f"(e.g. to {raw.decode('utf-8', 'replace').replace(chr(0xFFFD), '_')!r})")


class DgmixError(Exception):
    """Base class of every error dgmix raises on purpose."""


class InputError(DgmixError):
    """Bad input (a file or a value the user gave). ``str(e)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = shown_path(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}")


class TrainingError(DgmixError):
    """A training run stopped on purpose (non-finite loss, ...)."""
