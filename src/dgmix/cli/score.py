"""``dgmix score``: point a saved detector at new clips (score and 0/1 decision per clip).

With ``--onnx FILE`` the clips are scored by an exported ONNX graph on onnxruntime
(``dgmix export``; extra ``[export]``) instead of a ``detector.pt``. Both go through
:func:`dgmix.scoring.clips.score_clip`, the path ``dgmix serve`` uses too.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from dgmix.cli.common import fail, guarded, setup
from dgmix.cli.options import OnError
from dgmix.errors import InputError, shown_path


def _clip_files(clips: list[Path]) -> list[Path]:
    """The clip files under ``clips`` (files as given; folders searched recursively for the
    extensions every verb reads, :data:`dgmix.data.discover.CLIP_EXTENSIONS`)."""
    from dgmix.data.discover import CLIP_EXTENSIONS

    for c in clips:
        if not c.exists():
            raise InputError(c, "no such file or folder")
    return [f for c in clips for f in (sorted(p for p in c.rglob("*") if p.is_file() and p.suffix.lower()
                                              in CLIP_EXTENSIONS) if c.is_dir() else [c])]


def register(app: typer.Typer) -> None:
    @app.command()
    def score(
        paths: list[Path] = typer.Argument(
            ..., metavar="DETECTOR CLIPS...",
            help="detector.pt written by dgmix run, then WAV files or folders of WAV files "
                 "(with --onnx: only the clips)."),
        onnx: Path | None = typer.Option(None, "--onnx", help="Score with this ONNX file (dgmix export) on "
                                         "onnxruntime instead of a detector.pt bundle."),
        section: str | None = typer.Option(None, "--section", help="Section id for clips whose names carry none "
                                          "(a different section in a name is refused)."),
        channel: int | None = typer.Option(
            None, "--channel", help="Channel to use (default: the detector's own setting, usually the downmix)."),
        pad: bool = typer.Option(False, "--pad", help="Zero-pad clips shorter than one window "
                                 "(default: the detector's own setting)."),
        allow_silence: bool = typer.Option(False, "--allow-silence", help="Accept all-zero clips "
                                           "(default: the detector's own setting)."),
        out_csv: Path | None = typer.Option(None, "--csv", help="Also write file,score,decision rows here."),
        on_error: OnError = typer.Option(OnError.skip, "--on-error", help="skip: report bad clips, go on; fail: stop."),
    ) -> None:
        """Score new clips with a saved detector: prints file, score and decision (1 = anomaly)."""
        from dgmix.io_atomic import atomic_write_text
        from dgmix.scoring.clips import load_detector, score_clip

        setup()
        if onnx is None and len(paths) < 2:
            fail("give a detector.pt and at least one clip (or --onnx FILE and the clips)")
        with guarded():
            detector, clips = (load_detector(onnx), paths) if onnx is not None else (load_detector(paths[0]), paths[1:])
            rows = []
            files = _clip_files(clips)
            for f in files:
                try:
                    res = score_clip(detector, f, section, channel=channel, pad=pad or None,
                                     allow_silence=allow_silence or None)
                except InputError as exc:
                    if on_error is OnError.fail:
                        raise
                    typer.echo(f"skipped {exc}", err=True)
                    continue
                decision = "" if res.decision is None else str(res.decision)
                rows.append((str(f), res.score, decision))
                typer.echo(f"{f}\t{res.score:.6g}\t{decision or '-'}")
            if not rows:  # nothing to write: no --csv file is left behind
                raise InputError(", ".join(shown_path(c) for c in clips), f"no clip could be scored ({len(files)} "
                                 f"WAV file(s) found, {len(files)} skipped)")
            if out_csv is not None:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                atomic_write_text(out_csv, buf.getvalue())
