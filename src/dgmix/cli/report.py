"""``dgmix report RUN_DIR``: the self-contained HTML report of a run."""

from __future__ import annotations

from pathlib import Path

import typer

from dgmix.cli.common import run_guarded, setup_logging


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., help="Run directory written by dgmix run."),
        out: Path | None = typer.Option(None, "--out", help="HTML file (default RUN_DIR/report.html)."),
        paper: bool | None = typer.Option(
            None, "--paper-reference/--no-paper-reference",
            help="Show the paper's Tables 2-3 beside ours (default: as the run recorded)."),
        tsne: bool | None = typer.Option(None, "--tsne/--no-tsne", help="t-SNE plots (default: the run's config)."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Write one HTML file with the results tables, ROC curves, score histograms, t-SNE plots of the
        training embeddings and the training curves; images are embedded, nothing else is needed."""
        setup_logging(verbose)

        def go():
            import dataclasses

            from dgmix.config import ReportConfig, config_from_dict, read_config_file
            from dgmix.report import build_report

            cfg = ReportConfig()
            seed = 0
            if (run_dir / "config.yaml").is_file():
                run_cfg = config_from_dict(read_config_file(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
                cfg, seed = run_cfg.report, run_cfg.seed
            if tsne is not None:
                cfg = dataclasses.replace(cfg, tsne=tsne)
            path = build_report(run_dir, cfg, out, seed, paper)
            typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")

        run_guarded(go)
