"""Logging set-up, flag overrides and error handling shared by the CLI verbs (their shared options:
:mod:`dgmix.cli.options`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from dgmix.config import PRESETS
from dgmix.errors import DgmixError, InputError, shown_path

#: exit status of a bad option or usage (bad input or data: 1; interrupted: 130)
USAGE = 2


def default_cache_dir() -> Path:
    """``$DGMIX_CACHE``, else ``~/.cache/dgmix/features``."""
    env = os.environ.get("DGMIX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dgmix" / "features"


def loader_overrides(pad: bool | None = None, allow_silence: bool | None = None, channel: int | None = None,
                     seed: int | None = None) -> dict:
    """Config overrides from the ``--pad`` / ``--allow-silence`` / ``--channel`` / ``--seed`` flags
    (only those given), or ``{}``."""
    feats = {k: v for k, v in (("pad", pad or None), ("allow_silence", allow_silence or None),
                               ("channel", channel)) if v is not None}
    return ({"features": feats} if feats else {}) | ({} if seed is None else {"seed": seed})




def split_list(value: str) -> list[str]:
    """The non-empty items of a comma list."""
    return [v.strip() for v in value.split(",") if v.strip()]


def error_lines(errors: list[tuple[Path, str]]) -> list[str]:
    """The files that could not be used, one line each under a count (nothing when none)."""
    if not errors:
        return []
    return [f"{len(errors)} file(s) could not be used:", *(f"  {shown_path(p)}: {m}" for p, m in errors)]


def errors_json(errors: list[tuple[Path, str]]) -> list[dict]:
    return [{"path": shown_path(p), "error": m} for p, m in errors]


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def setup(verbose: bool = False, preset: str | None = None) -> None:
    """Log to stderr (INFO with ``--verbose``); check ``--preset`` when given (unknown: exit 2)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if preset is not None and preset not in PRESETS:
        fail(f"--preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", code=2)


@contextmanager
def guarded(code: int = 1) -> Iterator[None]:
    """A ``DgmixError`` inside the block becomes a one-line message and exit status ``code`` (1:
    bad input or data), or 2 when it names an option (``--name: ...``): one exit code per kind
    of error in every verb (usage 2, input or data 1, interrupted 130)."""
    try:
        yield
    except DgmixError as exc:
        fail(str(exc), USAGE if isinstance(exc, InputError) and exc.path.startswith("--") else code)
    except KeyboardInterrupt:
        fail("interrupted; completed checkpoints are kept", code=130)
