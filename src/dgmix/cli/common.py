"""Options and error handling shared by the CLI verbs."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from dgmix.errors import DgmixError

F = TypeVar("F", bound=Callable[..., Any])


def default_cache_dir() -> Path:
    """``$DGMIX_CACHE``, else ``~/.cache/dgmix/features``."""
    env = os.environ.get("DGMIX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dgmix" / "features"


def loader_overrides(pad: bool | None, allow_silence: bool | None) -> dict:
    """``{"features": {...}}`` config overrides from the ``--pad`` / ``--allow-silence`` flags
    (only those given), or ``{}``."""
    feats = {k: v for k, v in (("pad", pad), ("allow_silence", allow_silence)) if v}
    return {"features": feats} if feats else {}


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a ``DgmixError`` becomes a one-line message and exit status 1."""
    try:
        return fn()
    except DgmixError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; completed checkpoints are kept", code=130)
