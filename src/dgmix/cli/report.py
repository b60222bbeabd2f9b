"""``dgmix report RUN_DIR``: the self-contained HTML report of a run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from dgmix.cli.common import guarded, setup
from dgmix.cli.options import Verbose


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., help="Run directory written by dgmix run."),
        out: Path | None = typer.Option(None, "--out", help="HTML file (default RUN_DIR/report.html)."),
        paper: bool | None = typer.Option(
            None, "--paper-reference/--no-paper-reference",
            help="Show the paper's Tables 2-3 beside ours (default: as the run recorded)."),
        tsne: bool | None = typer.Option(None, "--tsne/--no-tsne", help="t-SNE plots (default: the run's config)."),
        verbose: Verbose = False,
    ) -> None:
        """Write one HTML file with the results tables, ROC curves, score histograms, t-SNE plots of the
        training embeddings, the training curves and the explanation maps of each section's top-scoring
        test clips; images are embedded, nothing else is needed."""
        from dgmix.config import ReportConfig, read_run_config
        from dgmix.report import build_report

        setup(verbose)
        with guarded():
            cfg, seed = ReportConfig(), 0
            if (run_dir / "config.yaml").is_file():
                run_cfg = read_run_config(run_dir)
                cfg, seed = run_cfg.report, run_cfg.seed
            if tsne is not None:
                cfg = dataclasses.replace(cfg, tsne=tsne)
            path = build_report(run_dir, cfg, out, seed, paper)
            typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
