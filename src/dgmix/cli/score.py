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

from dgmix.cli.common import fail, run_guarded, setup_logging


def _clip_files(clips: list[Path]) -> list[Path]:
    from dgmix.errors import InputError

    files: list[Path] = []
    for c in clips:
        if c.is_dir():
            files += sorted(p for p in c.rglob("*.wav"))
        elif c.exists():
            files.append(c)
        else:
            raise InputError(c, "no such file or folder")
    return files


def register(app: typer.Typer) -> None:
    @app.command()
    def score(
        paths: list[Path] = typer.Argument(
            ..., metavar="DETECTOR CLIPS...",
            help="detector.pt written by dgmix run, then WAV files or folders of WAV files "
                 "(with --onnx: only the clips)."),
        onnx: Path | None = typer.Option(None, "--onnx", help="Score with this ONNX file (dgmix export) on "
                                         "onnxruntime instead of a detector.pt bundle."),
        section: str | None = typer.Option(None, "--section",
                                              help="Section id for clips whose names carry none."),
        channel: int | None = typer.Option(
            None, "--channel", help="Channel to use (default: the detector's own setting, usually the downmix)."),
        pad: bool = typer.Option(False, "--pad", help="Zero-pad clips shorter than one window "
                                 "(default: the detector's own setting)."),
        allow_silence: bool = typer.Option(False, "--allow-silence", help="Accept all-zero clips "
                                           "(default: the detector's own setting)."),
        out_csv: Path | None = typer.Option(None, "--csv", help="Also write file,score,decision rows here."),
        on_error: str = typer.Option("skip", "--on-error", help="skip | fail"),
    ) -> None:
        """Score new clips with a saved detector: prints file, score and decision (1 = anomaly)."""
        setup_logging(False)

        def go():
            from dgmix.errors import InputError, shown_path
            from dgmix.io_atomic import atomic_write_text
            from dgmix.scoring.clips import load_detector, score_clip

            if onnx is not None:
                detector, clips = load_detector(onnx), paths
            else:
                if len(paths) < 2:
                    fail("give a detector.pt and at least one clip (or --onnx FILE and the clips)")
                detector, clips = load_detector(paths[0]), paths[1:]
            rows = []
            skipped = 0
            files = _clip_files(clips)
            for f in files:
                try:
                    res = score_clip(detector, f, section, channel=channel, pad=pad or None,
                                     allow_silence=allow_silence or None)
                except InputError as exc:
                    if on_error == "fail":
                        raise
                    skipped += 1
                    typer.echo(f"skipped {exc}", err=True)
                    continue
                decision = "" if res.decision is None else str(res.decision)
                rows.append((str(f), res.score, decision))
                typer.echo(f"{f}\t{res.score:.6g}\t{decision or '-'}")
            if not rows:  # nothing to write: no --csv file is left behind
                where = ", ".join(shown_path(c) for c in clips)
                raise InputError(where, f"no clip could be scored ({len(files)} WAV file(s) found, "
                                 f"{skipped} skipped)")
            if out_csv is not None:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                atomic_write_text(out_csv, buf.getvalue())

        run_guarded(go)
