"""``dgmix export``: write a detector bundle as one ONNX graph (extra ``[export]``); see dgmix.export."""

from __future__ import annotations

from pathlib import Path

import typer

from dgmix.cli.common import fail, guarded, setup
from dgmix.errors import InputError


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        detector: Path = typer.Argument(..., help="detector.pt written by dgmix run."),
        fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
        out: Path = typer.Option(..., "--out", help="File to write (e.g. detector.onnx)."),
    ) -> None:
        """Export a detector: one ONNX graph, log-mel frames + section in, anomaly score out
        (score with it: dgmix score --onnx FILE CLIPS...)."""
        setup()
        if fmt != "onnx":
            fail(f"--format {fmt!r} is not supported (supported: onnx)")
        if out.is_dir():
            fail(f"--out: {out} is a folder; give the file to write, e.g. {out / 'detector.onnx'}", code=2)
        with guarded():
            from dgmix.export.writer import export_onnx
            from dgmix.scoring.clips import load_detector
            from dgmix.scoring.detector import Detector

            det = load_detector(detector)
            if not isinstance(det, Detector):
                raise InputError(detector, "is already an ONNX file; give the detector.pt it was exported from")
            info = export_onnx(det, out, source=detector)
            typer.echo(f"wrote {info.path} ({info.size_bytes / 1e6:.2f} MB): {info.method} detector for "
                       f"{info.machine}, sections {', '.join(info.sections)}")
            typer.echo(f"checked: onnxruntime vs PyTorch on random frames, max relative difference "
                       f"{info.max_rel_diff:.1e}")
