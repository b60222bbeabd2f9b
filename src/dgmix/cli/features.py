"""``dgmix features ROOT --cache DIR``: compute the log-mel features of every clip into the cache.

Scans ROOT with :func:`dgmix.data.scan`, fills a :class:`dgmix.features.FeatureCache` in parallel
with a progress bar, and prints a summary: clips, computed, taken from the cache, bad files (one
line each), total frames and context windows (paper Sec. 3.1: P = 64, L = 8), seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dgmix.cli.common import error_lines, errors_json, fail, guarded, loader_overrides
from dgmix.cli.options import OnError


def features(
    root: Annotated[Path, typer.Argument(help="Dataset folder (DCASE layout or any folder of clips).")],
    cache: Annotated[Path, typer.Option("--cache", help="Feature cache folder (created if missing).")],
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes computing features (workers start "
                                         "only from 2048 missing clips; fewer are faster in this process).")] = 2,
    channel: Annotated[int | None, typer.Option(
        "--channel", min=0, help="Use this channel of multi-channel files (default: mean of all channels).")] = None,
    pad: Annotated[bool, typer.Option("--pad", help="Zero-pad clips shorter than one context window.")] = False,
    allow_silence: Annotated[
        bool, typer.Option("--allow-silence", help="Accept all-zero clips instead of refusing them.")] = False,
    on_error: Annotated[OnError, typer.Option(
        "--on-error", help="skip: list bad files at the end; fail: stop at the first.")] = OnError.skip,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")] = True,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML/TOML run config whose `features` section to use (default: the paper's settings), "
        "so the cache matches that run's.")] = None,
) -> None:
    """Compute log-mel features of every clip under ROOT into the cache (paper Sec. 3.1)."""
    from dgmix.config import DEFAULT_PRESET, load_config
    from dgmix.data import scan
    from dgmix.features import FeatureCache, n_windows

    if not root.is_dir():
        fail(f"{root}: dataset folder not found", code=2)
    with guarded():
        params = load_config(DEFAULT_PRESET, config, loader_overrides(pad, allow_silence, channel)).features
        ds = scan(root, on_error=on_error.value)
        cache_obj = FeatureCache(cache, params)
        report = cache_obj.fill([r.path for r in ds.records], workers=workers, progress=progress,
                                on_error=on_error.value)
    errors = sorted([*ds.errors, *report.errors], key=lambda e: str(e[0]))
    windows = int(sum(n_windows(t, params.frames, params.window_hop) for t in report.frames.values()))
    if json_out:
        typer.echo(json.dumps({
            "root": str(root), "cache": str(cache_obj.root), "clips": len(ds.records), "computed": report.computed,
            "cached": report.cached, "errors": errors_json(errors),
            "frames": report.total_frames, "windows": windows, "seconds": round(report.seconds, 3)}, indent=2))
        return
    typer.echo(f"{len(ds.records)} clips: {report.computed} computed, {report.cached} from cache, "
               f"{len(errors)} error(s); {report.total_frames} frames, {windows} windows "
               f"({params.frames} frames, hop {params.window_hop}); {report.seconds:.1f} s")
    typer.echo("\n".join([f"cache: {cache_obj.root}", *error_lines(errors)]))


def register(app: typer.Typer) -> None:
    """Add the ``features`` command to ``app``."""
    app.command("features")(features)
