"""``dgmix serve``: score clips over HTTP with a saved detector (extra ``[serve]``); see dgmix.serve."""

from __future__ import annotations

from pathlib import Path

import typer

from dgmix.cli.common import fail, guarded, setup


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        detector: Path = typer.Argument(..., help="detector.pt written by dgmix run, or an .onnx file from "
                                        "dgmix export."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port to listen on (1-65535)."),
        max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest accepted upload in MiB "
                                            "(2^20 bytes); a larger one gets 413."),
        log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical | error | "
                                      "warning | info | debug."),
    ) -> None:
        """Serve a detector over HTTP: POST /score (a WAV in, score and decision out), GET /health, GET /info."""
        setup()
        if max_upload_mb <= 0:
            fail("--max-upload-mb must be > 0")
        with guarded():
            from dgmix.serve import run_server

            run_server(detector, host, port, int(max_upload_mb * 1024 * 1024), log_level)
