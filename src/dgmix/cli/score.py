"""``dgmix score``: point a saved detector at new clips (score and 0/1 decision per clip)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from dgmix.cli.common import run_guarded, setup_logging


def register(app: typer.Typer) -> None:
    @app.command()
    def score(
        detector: Path = typer.Argument(..., help="detector.pt written by dgmix run / dgmix export."),
        clips: list[Path] = typer.Argument(..., help="WAV files or folders of WAV files."),
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
            from dgmix.data import parse_filename
            from dgmix.errors import InputError, shown_path, undecodable_name
            from dgmix.io_atomic import atomic_write_text
            from dgmix.scoring.bundle import DetectorBundle

            bundle = DetectorBundle.load(detector)
            files: list[Path] = []
            for c in clips:
                if c.is_dir():
                    files += sorted(p for p in c.rglob("*.wav"))
                elif c.exists():
                    files.append(c)
                else:
                    raise InputError(c, "no such file or folder")
            rows = []
            skipped = 0
            for f in files:
                try:
                    if undecodable_name(f) is not None:
                        raise InputError(f, undecodable_name(f))
                    sec = section
                    if sec is None:
                        try:
                            sec = parse_filename(f, machine=bundle.machine).section
                        except InputError:
                            sec = bundle.section_names[0] if len(bundle.section_names) == 1 else None
                    if sec is None:
                        raise InputError(f, "cannot tell the section from the name; pass --section")
                    feats = bundle.features_of(f, channel=channel, pad=pad or None,
                                               allow_silence=allow_silence or None)
                    s = float(bundle.score_features([feats], [sec])[0])
                    d = int(bundle.decide([s], [sec])[0])
                    rows.append((str(f), s, d))
                    typer.echo(f"{f}\t{s:.6f}\t{d}")
                except InputError as exc:
                    if on_error == "fail":
                        raise
                    skipped += 1
                    typer.echo(f"skipped {exc}", err=True)
            if not rows:  # nothing to write: no --csv file is left behind
                where = ", ".join(shown_path(c) for c in clips)
                raise InputError(where, f"no clip could be scored ({len(files)} WAV file(s) found, "
                                 f"{skipped} skipped)")
            if out_csv is not None:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                atomic_write_text(out_csv, buf.getvalue())

        run_guarded(go)

