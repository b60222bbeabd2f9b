"""``dgmix run``: the whole pipeline on a dataset (the default synthetic set without ``--data``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from dgmix.cli.common import fail, loader_overrides, run_guarded, setup_logging
from dgmix.config import DEFAULT_PRESET, PRESETS, load_config, read_run_config, write_config
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text

DEFAULT_OUT = Path("runs/default")
#: where the default synthetic set (and its feature cache) goes, beside the run folder
SYNTH_DIR = "synthetic"
PRESET_HELP = (f"paper | cpu | tiny (default {DEFAULT_PRESET}, the same for every verb: a short schedule "
               "for a 2-core machine; paper = the paper's schedule, 100 + 20 epochs).")


def _method_help() -> list[str]:
    from dgmix.methods import method_names

    return method_names()


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        data: Path | None = typer.Option(
            None, "--data", help="Dataset root. Without it, the default synthetic set is generated."
        ),
        methods: str = typer.Option(
            "all", "--methods",
            help=f"Comma list of methods, or all: {', '.join(_method_help())} (`dgmix methods` describes them)."),
        machines: str = typer.Option("all", "--machines", help="Comma list of machine types, or all."),
        preset: str = typer.Option(DEFAULT_PRESET, "--preset", help=PRESET_HELP),
        config: Path | None = typer.Option(None, "--config", help="YAML/TOML overrides of any field."),
        out: Path = typer.Option(DEFAULT_OUT, "--out", help="Run directory."),
        cache: Path | None = typer.Option(None, "--cache", help="Feature cache (default OUT/cache; without "
                                          "--data, the default set's own cache beside OUT)."),
        paper: bool | None = typer.Option(None, "--paper-reference/--no-paper-reference",
                                             help="Put the paper's numbers beside ours (default: on for --data)."),
        seed: int | None = typer.Option(None, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT: finished "
                                    "machine types and methods are kept, the rest continues from its checkpoints."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start clean in a used OUT (its feature "
                                       "cache is kept)."),
        keep_checkpoints: bool = typer.Option(
            False, "--keep-checkpoints", help="Keep the training stages' files (resume checkpoints last.pt and the "
            "stage weights encoder.pt / model.pt) once the run has finished; by default they are removed then "
            "(each detector.pt holds what scoring needs; a failed or interrupted run keeps them)."),
        pad: bool = typer.Option(False, "--pad", help="Zero-pad clips shorter than one window (features.pad)."),
        allow_silence: bool = typer.Option(False, "--allow-silence",
                                           help="Accept all-zero clips (features.allow_silence)."),
        test_normals: str | None = typer.Option(
            None, "--test-normals", help="Layouts without a train/test split (MIMII 2019, <machine>/{normal,anomaly}): "
            "normal clips per machine type and ID in the test set, N or a FRACTION (default: match = as many as "
            "the anomalous clips, the MIMII protocol; config split.*)."),
        device: str = typer.Option("auto", "--device",
                                   help="Where the models train: auto (CUDA when available), cpu, cuda."),
        progress: bool | None = typer.Option(
            None, "--progress/--no-progress", help="Progress bars (default: only when stderr is a terminal)."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run every registered method (the paper's four and the logmel floor) on every machine type."""
        setup_logging(verbose)
        if preset not in PRESETS:
            fail(f"--preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", code=2)
        overrides: dict = loader_overrides(pad, allow_silence)
        if seed is not None:
            overrides["seed"] = seed

        bars = sys.stderr.isatty() if progress is None else progress

        def go():
            from dgmix.data import parse_test_normals
            from dgmix.methods import method_names
            from dgmix.pipeline import run_pipeline
            from dgmix.report import build_report
            from dgmix.report.console import summary_markdown, where_lines
            from dgmix.rundir import prepare_out_dir, remove_training_files
            from dgmix.synth import SynthConfig, generate

            t0 = time.perf_counter()
            if test_normals is not None:
                overrides["split"] = {"test_normals": parse_test_normals(test_normals)}
            cfg = load_config(preset, config, overrides)
            if data is not None and not data.is_dir():
                raise InputError(data, "dataset folder not found" if not data.exists() else "not a folder")
            prepare_out_dir(out, resume, overwrite, keep=("cache",))
            if resume:  # continue with the settings the run started with
                cfg = read_run_config(out)
            root, cache_dir = data, cache
            if root is None:
                write_config(cfg, out)  # first, so that a run killed while generating can resume
                # the default set is an input, not an output: it lives beside the run folder and is
                # generated once for every run there (seeded, so always the same clips)
                synth_out = out.resolve().parent / SYNTH_DIR
                done = synth_out / "synth-complete"  # written once the whole set is there
                if not done.is_file():
                    typer.echo(f"no --data: generating the default synthetic set in {synth_out}")
                    generate(synth_out, SynthConfig(), workers=2, progress=bars, overwrite=True)
                    atomic_write_text(done, "")
                else:
                    typer.echo(f"no --data: the default synthetic set in {synth_out}")
                root = synth_out / "dev_data"
                cache_dir = cache if cache is not None else synth_out / "cache"
            summary = run_pipeline(
                root, out, cfg, methods=method_names() if methods == "all" else _split(methods),
                machines=None if machines == "all" else _split(machines), cache_dir=cache_dir,
                progress=bars, echo=typer.echo,
                paper_reference=paper if paper is not None else data is not None,
                device=device, resume=resume,
            )
            if summary.table.methods():
                typer.echo("")
                typer.echo("official score (%): per machine type and overall")
                typer.echo(summary_markdown(summary.table))
            else:  # nothing labelled to evaluate (e.g. evaluation clips without ground truth)
                typer.echo("no results table: no test section has labelled normal and anomalous clips "
                           "(give the ground truth to evaluate)")
            report = None
            if cfg.report.enabled:
                typer.echo("")
                typer.echo("writing the report (figures, t-SNE) ...")
                report = build_report(out, cfg.report, seed=cfg.seed)
            if not keep_checkpoints:  # finished: --resume reads the pairs back from their done.json
                removed = remove_training_files(out)
                if removed.paths:
                    typer.echo(f"removed {len(removed.paths)} training file(s) (checkpoints and stage weights, "
                               f"{removed.nbytes / 1e6:.1f} MB; the detectors hold what scoring needs); "
                               "--keep-checkpoints keeps them")
            typer.echo("")
            for line in where_lines(out, summary.table, root, report):
                typer.echo(line)
            typer.echo(f"elapsed: {time.perf_counter() - t0:.1f} s")

        run_guarded(go)
