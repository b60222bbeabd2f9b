"""``dgmix watch``: score each clip that lands in a folder once, log it as a JSON line, print alarms
(:mod:`dgmix.watch`)."""

from __future__ import annotations

from pathlib import Path

import typer

from dgmix.cli.common import guarded, setup


def register(app: typer.Typer) -> None:
    @app.command()
    def watch(
        detector_path: Path = typer.Argument(..., metavar="DETECTOR",
                                             help="detector.pt written by dgmix run (or an exported .onnx file)."),
        folder: Path = typer.Argument(..., help="Folder the recorder writes clips into (searched recursively)."),
        log: Path = typer.Option(..., "--log", help="Append one JSON line per clip here; on a restart, clips "
                                 "already in it (same size and modification time) are not scored again."),
        interval: float = typer.Option(1.0, "--interval", help="Seconds between looks at the folder."),
        settle: float = typer.Option(2.0, "--settle", help="Seconds a clip's size and modification time must stay "
                                     "the same before it is scored (a clip still being written is not)."),
        max_files: int | None = typer.Option(None, "--max-files", help="Stop after logging this many clips."),
        timeout: float | None = typer.Option(None, "--timeout", help="Stop after this many seconds."),
        section: str | None = typer.Option(None, "--section", help="Section id for clips whose names carry none."),
        channel: int | None = typer.Option(
            None, "--channel", help="Channel to use (default: the detector's own setting, usually the downmix)."),
        pad: bool = typer.Option(False, "--pad", help="Zero-pad clips shorter than one window."),
        allow_silence: bool = typer.Option(False, "--allow-silence", help="Accept all-zero clips."),
    ) -> None:
        """Watch FOLDER: score each new clip once, append it to --log, print an ALARM line for each
        clip above its section's threshold. Ctrl-C, --max-files or --timeout end it."""
        from dgmix.scoring.clips import load_detector
        from dgmix.watch import Watcher, WatchOptions, summary_line

        setup()
        with guarded():
            opts = WatchOptions(interval=interval, settle=settle, max_files=max_files, timeout=timeout,
                                section=section, channel=channel, pad=pad or None,
                                allow_silence=allow_silence or None)
            det = load_detector(detector_path)
            watcher = Watcher(det, folder, log, opts, echo=typer.echo,
                              echo_err=lambda s: typer.echo(s, err=True))
            typer.echo(f"watching {folder} with the {det.method} detector of {det.machine} (sections "
                       f"{', '.join(det.section_names)}); log {log}, {len(watcher.done)} clip(s) already in it",
                       err=True)
            summary = watcher.run()
        typer.echo(summary_line(folder, summary))
