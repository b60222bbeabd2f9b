"""``dgmix export``: write a detector bundle as one ONNX graph (extra ``[export]``); see dgmix.export."""

from __future__ import annotations

from pathlib import Path

import typer

from dgmix.cli.common import fail, run_guarded, setup_logging

FORMATS = ("onnx",)


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        detector: Path = typer.Argument(..., help="detector.pt written by dgmix run."),
        fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
        out: Path = typer.Option(..., "--out", help="File to write (e.g. detector.onnx)."),
    ) -> None:
        """Export a detector: one ONNX graph, log-mel windows + section in, anomaly score out
        (score with it: dgmix score --onnx FILE CLIPS...)."""
        setup_logging(False)
        if fmt not in FORMATS:
            fail(f"--format {fmt!r} is not supported (supported: {', '.join(FORMATS)})")

        def go():
            from dgmix.export.writer import export_onnx
            from dgmix.scoring.bundle import DetectorBundle

            bundle = DetectorBundle.load(detector)
            info = export_onnx(bundle, out, source=detector)
            held = f"{info.components} mixture components" if info.components else f"{info.bank_rows} bank rows"
            typer.echo(f"wrote {info.path} ({info.size_bytes / 1e6:.2f} MB): {info.method} detector for "
                       f"{info.machine}, kind {info.kind}, sections {', '.join(info.sections)}, {held}")
            typer.echo(f"checked: onnxruntime vs PyTorch on random windows, max relative difference "
                       f"{info.max_rel_diff:.1e}")

        run_guarded(go)
