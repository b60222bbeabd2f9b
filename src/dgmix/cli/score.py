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


def write_explanation(folder: Path, clip: Path, res, params, roots: list[Path]) -> None:  # noqa: ANN001
    """``folder/<clip>.png`` and ``.npy`` of a scored clip's explanation; the name keeps the clip's
    folders below the given root (two clips of one name in two folders do not collide)."""
    import numpy as np

    from dgmix.io_atomic import atomic_write_bytes
    from dgmix.report.maps import save_explanation

    root = next((r for r in roots if r.is_dir() and clip.is_relative_to(r)), None)
    rel = clip.relative_to(root) if root is not None else Path(clip.name)
    stem = folder / rel.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, res.explanation.map)
    atomic_write_bytes(stem.with_suffix(".npy"), buf.getvalue())
    buf = io.BytesIO()
    save_explanation(buf, res.explanation, params, f"{clip.name} (section {res.section})")
    atomic_write_bytes(stem.with_suffix(".png"), buf.getvalue())


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
        out_csv: Path | None = typer.Option(None, "--csv", help="Also write file,score,decision,p_value rows here "
                                            "(with --explain: and the strongest bands in Hz and times in s)."),
        explain: Path | None = typer.Option(
            None, "--explain", help="Write each clip's explanation here: what in time and frequency drives its "
            "score, as <clip>.png (the log-mel with the map over it) and <clip>.npy (the map, mel bins x frames)."),
        on_error: OnError = typer.Option(OnError.skip, "--on-error", help="skip: report bad clips, go on; fail: stop."),
    ) -> None:
        """Score new clips with a saved detector: prints file, score and decision (1 = anomaly)."""
        from dgmix.io_atomic import atomic_write_text
        from dgmix.scoring.clips import load_detector, score_clip

        setup()
        if onnx is None and len(paths) < 2:
            fail("give a detector.pt and at least one clip (or --onnx FILE and the clips)")
        if onnx is not None and explain is not None:
            fail("--explain needs the detector.pt (an ONNX graph gives the score only)", code=2)
        with guarded():
            detector, clips = (load_detector(onnx), paths) if onnx is not None else (load_detector(paths[0]), paths[1:])
            rows = []
            files = _clip_files(clips)
            for f in files:
                try:
                    res = score_clip(detector, f, section, channel=channel, pad=pad or None,
                                     allow_silence=allow_silence or None, explain=explain is not None)
                except InputError as exc:
                    if on_error is OnError.fail:
                        raise
                    typer.echo(f"skipped {exc}", err=True)
                    continue
                decision = "" if res.decision is None else str(res.decision)
                p_value = "" if res.p_value is None else f"{res.p_value:.4g}"
                row: tuple = (str(f), res.score, decision, p_value)
                line = f"{f}\t{res.score:.6g}\t{decision or '-'}\tp={p_value or '-'}"
                if res.explanation is not None:
                    bands, times = res.explanation.csv_fields()
                    row += (bands, times)
                    line += f"\tbands {bands or '-'} Hz\ttimes {times} s"
                    write_explanation(explain, f, res, detector.params, clips)
                rows.append(row)
                typer.echo(line)
            if not rows:  # nothing to write: no --csv file is left behind
                raise InputError(", ".join(shown_path(c) for c in clips), f"no clip could be scored ({len(files)} "
                                 f"WAV file(s) found, {len(files)} skipped)")
            if out_csv is not None:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                atomic_write_text(out_csv, buf.getvalue())
