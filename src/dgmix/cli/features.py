"""``dgmix features ROOT --cache DIR``: compute the log-mel features of every clip into the cache.

Scans ROOT with :func:`dgmix.data.scan`, fills a :class:`dgmix.features.FeatureCache` in parallel
with a progress bar, and prints a summary: clips, computed, taken from the cache, bad files (one
line each), total frames and context windows (paper Sec. 3.1: P = 64, L = 8), seconds.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dgmix.errors import InputError, shown_path


class OnError(str, Enum):
    """What to do with a clip that cannot be loaded."""

    skip = "skip"
    fail = "fail"


def features(
    root: Annotated[Path, typer.Argument(help="Dataset folder (DCASE layout or any folder of clips).")],
    cache: Annotated[Path, typer.Option("--cache", help="Feature cache folder (created if missing).")],
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes computing features (workers start only from "
                           "2048 missing clips; fewer are faster in this process).")
    ] = 2,
    channel: Annotated[
        int | None,
        typer.Option("--channel", min=0, help="Use this channel of multi-channel files "
                     "(default: mean of all channels)."),
    ] = None,
    pad: Annotated[
        bool, typer.Option("--pad", help="Zero-pad clips shorter than one context window.")
    ] = False,
    allow_silence: Annotated[
        bool, typer.Option("--allow-silence", help="Accept all-zero clips instead of refusing them.")
    ] = False,
    on_error: Annotated[
        OnError,
        typer.Option("--on-error", help="skip: list bad files at the end; fail: stop at the first."),
    ] = OnError.skip,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of text.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML/TOML run config whose `features` section to use "
                     "(default: the paper's settings), so the cache matches that run's."),
    ] = None,
) -> None:
    """Compute log-mel features of every clip under ROOT into the cache (paper Sec. 3.1)."""
    from dgmix.config import DEFAULT_PRESET, load_config
    from dgmix.data import scan
    from dgmix.features import FeatureCache, n_windows

    if not root.is_dir():
        typer.echo(f"error: {root}: dataset folder not found", err=True)
        raise typer.Exit(2)
    try:
        loader = {k: v for k, v in (("channel", channel), ("pad", pad or None),
                                    ("allow_silence", allow_silence or None)) if v is not None}
        params = load_config(DEFAULT_PRESET, config, {"features": loader} if loader else None).features
        ds = scan(root, on_error=on_error.value)
        cache_obj = FeatureCache(cache, params)
        report = cache_obj.fill(
            [r.path for r in ds.records], workers=workers, progress=progress,
            on_error=on_error.value,
        )
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None

    errors = sorted([*ds.errors, *report.errors], key=lambda e: str(e[0]))
    total_windows = sum(n_windows(t, params.frames, params.window_hop) for t in report.frames.values())
    summary = {
        "root": str(root),
        "cache": str(cache_obj.root),
        "clips": len(ds.records),
        "computed": report.computed,
        "cached": report.cached,
        "errors": [{"path": shown_path(p), "error": msg} for p, msg in errors],
        "frames": report.total_frames,
        "windows": int(total_windows),
        "seconds": round(report.seconds, 3),
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(
            f"{summary['clips']} clips: {report.computed} computed, {report.cached} from cache, "
            f"{len(errors)} error(s); {summary['frames']} frames, {summary['windows']} windows "
            f"({params.frames} frames, hop {params.window_hop}); {report.seconds:.1f} s"
        )
        typer.echo(f"cache: {cache_obj.root}")
        if errors:
            typer.echo(f"{len(errors)} file(s) could not be used:")
            for p, msg in errors:
                typer.echo(f"  {shown_path(p)}: {msg}")


def register(app: typer.Typer) -> None:
    """Add the ``features`` command to ``app``."""
    app.command("features")(features)
