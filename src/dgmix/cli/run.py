"""``dgmix run``: the whole pipeline; ``dgmix score``: point a saved detector at new clips."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import typer

from dgmix.cli.common import fail, run_guarded, setup_logging
from dgmix.config import PRESETS, load_config

DEFAULT_OUT = Path("runs/default")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def scoring_overrides(pooling: str | None, window_level: bool | None, domain_aware: bool | None) -> dict:
    """Config overrides from ``dgmix run``'s scoring flags. ``--pooling`` applies to every method,
    so it also resets ``scoring.logmel_pooling`` (the ``cpu`` preset's max pooling for logmel)."""
    scoring = {k: v for k, v in (("pooling", pooling), ("window_level", window_level),
                                  ("domain_aware", domain_aware)) if v is not None}
    if pooling is not None:
        scoring["logmel_pooling"] = "same"
    return scoring


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        data: Path | None = typer.Option(
            None, "--data", help="Dataset root. Without it, the default synthetic set is generated."
        ),
        methods: str = typer.Option(
            "baseline,scratch,vicreg,dgmix,logmel", "--methods",
            help="Comma list of baseline, scratch, vicreg, dgmix, logmel (the log-mel + k-NN floor)."),
        machines: str = typer.Option("all", "--machines", help="Comma list of machine types, or all."),
        preset: str = typer.Option("cpu", "--preset", help="paper | cpu | tiny."),
        config: Path | None = typer.Option(None, "--config", help="YAML/TOML overrides of any field."),
        out: Path = typer.Option(DEFAULT_OUT, "--out", help="Run directory."),
        cache: Path | None = typer.Option(None, "--cache", help="Feature cache (default OUT/cache)."),
        pooling: str | None = typer.Option(
            None, "--pooling", help="mean | max | gwrp | mean+max | mean+std, for every method (logmel too)."),
        window_level: bool | None = typer.Option(None, "--window-knn/--clip-knn",
                                                    help="Window-level k-NN instead of clip embeddings."),
        domain_aware: bool | None = typer.Option(None, "--domain-aware/--single-bank",
                                                    help="Separate, scale-normalised source/target banks."),
        paper: bool | None = typer.Option(None, "--paper-reference/--no-paper-reference",
                                             help="Put the paper's numbers beside ours (default: on for --data)."),
        scoring_table: bool = typer.Option(
            False, "--scoring-table", help="Also score every method with every pooling / k-NN option."
        ),
        seed: int | None = typer.Option(None, "--seed"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run baseline, scratch, VICReg, DG-Mix and the logmel floor on every machine type."""
        setup_logging(verbose)
        if preset not in PRESETS:
            fail(f"--preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", code=2)
        overrides: dict = {}
        scoring = scoring_overrides(pooling, window_level, domain_aware)
        if scoring:
            overrides["scoring"] = scoring
        if seed is not None:
            overrides["seed"] = seed

        def go():
            from dgmix.pipeline import run_pipeline, scoring_variants
            from dgmix.synth import SynthConfig, generate

            t0 = time.perf_counter()
            cfg = load_config(preset, config, overrides)
            root = data
            if root is None:
                synth_out = out / "data"
                typer.echo(f"no --data: generating the default synthetic set in {synth_out}")
                generate(synth_out, SynthConfig(), workers=2, progress=progress)
                root = synth_out / "dev_data"
            summary = run_pipeline(
                root, out, cfg, methods=_split(methods),
                machines=None if machines == "all" else _split(machines), cache_dir=cache,
                progress=progress, echo=typer.echo,
                paper_reference=paper if paper is not None else data is not None,
                extra_scorings=scoring_variants(cfg.scoring) if scoring_table else None,
            )
            if summary.table.methods():
                typer.echo("")
                typer.echo((out / "results.md").read_text())
            if scoring_table:
                typer.echo((out / "scoring_table.md").read_text())
            typer.echo(f"wrote {out}/results.md, results.csv, results.json and per-method scores")
            typer.echo(f"elapsed: {time.perf_counter() - t0:.1f} s")

        run_guarded(go)

    @app.command()
    def score(
        detector: Path = typer.Argument(..., help="detector.pt written by dgmix run / dgmix export."),
        clips: list[Path] = typer.Argument(..., help="WAV files or folders of WAV files."),
        section: str | None = typer.Option(None, "--section",
                                              help="Section id for clips whose names carry none."),
        channel: int | None = typer.Option(None, "--channel", help="Channel to use (default: downmix)."),
        pad: bool = typer.Option(False, "--pad", help="Zero-pad clips shorter than one window."),
        out_csv: Path | None = typer.Option(None, "--csv", help="Also write file,score,decision rows here."),
        on_error: str = typer.Option("skip", "--on-error", help="skip | fail"),
    ) -> None:
        """Score new clips with a saved detector: prints file, score and decision (1 = anomaly)."""
        setup_logging(False)

        def go():
            from dgmix.data import parse_filename
            from dgmix.errors import InputError
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
            for f in files:
                try:
                    sec = section
                    if sec is None:
                        try:
                            sec = parse_filename(f, machine=bundle.machine).section
                        except InputError:
                            sec = bundle.section_names[0] if len(bundle.section_names) == 1 else None
                    if sec is None:
                        raise InputError(f, "cannot tell the section from the name; pass --section")
                    feats = bundle.features_of(f, channel=channel, pad=pad)
                    s = float(bundle.score_features([feats], [sec])[0])
                    d = int(bundle.decide([s], [sec])[0])
                    rows.append((str(f), s, d))
                    typer.echo(f"{f}\t{s:.6f}\t{d}")
                except InputError as exc:
                    if on_error == "fail":
                        raise
                    typer.echo(f"skipped {exc}", err=True)
            if out_csv is not None:
                with open(out_csv, "w", newline="") as fh:
                    csv.writer(fh, lineterminator="\n").writerows(rows)
            if not rows:
                fail("no clip could be scored")

        run_guarded(go)

