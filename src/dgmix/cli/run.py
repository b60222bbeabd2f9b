"""``dgmix run``: the whole pipeline on a dataset (the default synthetic set without ``--data``)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from dgmix.cli.common import fail, guarded, loader_overrides, setup, split_list
from dgmix.cli.options import PRESET_HELP, AllowSilence, OnError, Pad, Seed, Verbose
from dgmix.config import DEFAULT_PRESET, load_config, resume_config, write_config
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text
from dgmix.methods import method_names

DEFAULT_OUT = Path("runs/default")
#: where the default synthetic set (and its feature cache) goes, beside the run folder
SYNTH_DIR = "synthetic"


def resumed_data_root(out: Path, data: Path | None) -> Path | None:
    """The data root ``--resume`` continues on: the run's own (its ``run_info.json``). ``--data``
    naming another folder is refused; without ``--data`` the run's folder is used (None: the run
    was on the default synthetic set, which is found again beside ``out``)."""
    from dgmix.runinfo import RUN_INFO

    info_path = out / RUN_INFO
    if not info_path.is_file():
        return data
    saved = json.loads(info_path.read_text()).get("data_root")
    default = (out.resolve().parent / SYNTH_DIR / "dev_data").resolve()
    if saved is None:
        return data
    if data is not None and data.resolve() != Path(saved).resolve():
        raise InputError("--resume", f"the run in {out} is on the data in {saved}, not {data}; resume without "
                         "--data (or with that folder), or start a new run (--overwrite or another --out)")
    if data is None and Path(saved).resolve() != default:
        return Path(saved)
    return data


@contextlib.contextmanager
def _left_as_found(out: Path) -> Iterator[None]:
    """A run that fails before any method finished on any machine type leaves ``out`` as it found
    it: what it created there (config.yaml, split.csv, the cache, the folder itself) goes, so the
    corrected command is not refused as a used folder. Once something finished, everything stays
    for ``--resume``; an interruption (Ctrl-C) keeps everything too."""
    from dgmix.pipeline import DONE_FILE

    before = set(out.iterdir()) if out.is_dir() else None
    try:
        yield
    except Exception:
        if out.is_dir() and not any(out.rglob(DONE_FILE)):
            if before is None:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for p in set(out.iterdir()) - before:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink()
        raise


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        data: Path | None = typer.Option(
            None, "--data", help="Dataset root. Without it, the default synthetic set is generated."),
        methods: str = typer.Option(
            "all", "--methods",
            help=f"Comma list of methods, or all: {', '.join(method_names())} (`dgmix methods` describes them)."),
        machines: str = typer.Option("all", "--machines", help="Comma list of machine types, or all."),
        preset: Annotated[str | None, typer.Option("--preset", help=PRESET_HELP)] = None,
        config: Path | None = typer.Option(None, "--config", help="YAML/TOML overrides of any field."),
        out: Path = typer.Option(DEFAULT_OUT, "--out", help="Run directory."),
        cache: Path | None = typer.Option(None, "--cache", help="Feature cache (default OUT/cache; without "
                                          "--data, the default set's own cache beside OUT)."),
        paper: bool | None = typer.Option(None, "--paper-reference/--no-paper-reference",
                                             help="Put the paper's numbers beside ours (default: on for --data)."),
        seed: Seed = None,
        on_error: OnError = typer.Option(OnError.skip, "--on-error", help="skip: leave out a clip that cannot be "
                                         "used (named, counted, listed in OUT/skipped.csv); fail: stop at the first."),
        jobs: str = typer.Option("auto", "--jobs", help="Machine types trained at once, in worker processes "
                                 "(auto: 1 on the CPU, all of them on a GPU); each machine type's result does "
                                 "not depend on the others."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT: finished "
                                    "machine types and methods are kept, the rest continues from its checkpoints."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start clean in a used OUT (its feature "
                                       "cache is kept)."),
        keep_checkpoints: bool = typer.Option(
            False, "--keep-checkpoints", help="Keep the training stages' files (resume checkpoints last.pt and the "
            "stage weights encoder.pt / model.pt) once the run has finished; by default they are removed then "
            "(each detector.pt holds what scoring needs; a failed or interrupted run keeps them)."),
        pad: Pad = False,
        allow_silence: AllowSilence = False,
        test_normals: str | None = typer.Option(
            None, "--test-normals", help="Layouts without a train/test split (MIMII 2019, <machine>/{normal,anomaly}): "
            "normal clips per machine type and ID in the test set, N or a FRACTION (default: match = as many as "
            "the anomalous clips, the MIMII protocol; config split.*)."),
        false_alarm_rate: float | None = typer.Option(
            None, "--false-alarm-rate",
            help="Set each section's alarm threshold so that a new normal clip raises an alarm with probability at "
            "most A (split-conformal on the normal training clips; config scoring.false_alarm_rate). Default: the "
            "official baseline's rule, the 90th percentile of a gamma fit."),
        device: str = typer.Option("auto", "--device",
                                   help="Where the models train: auto (CUDA when available), cpu, cuda."),
        progress: bool | None = typer.Option(
            None, "--progress/--no-progress", help="Progress bars (default: only when stderr is a terminal)."),
        verbose: Verbose = False,
    ) -> None:
        """Run every registered method (the paper's four and the logmel floor) on every machine type."""
        from dgmix.data import parse_test_normals
        from dgmix.pipeline import run_pipeline
        from dgmix.report import build_report
        from dgmix.report.console import summary_markdown, where_lines
        from dgmix.rundir import prepare_out_dir, remove_training_files
        from dgmix.runinfo import record_run_stage
        from dgmix.synth import generate
        from dgmix.synth.generate import SYNTH_SETS

        setup(verbose, preset)
        if false_alarm_rate is not None and not 0.0 < false_alarm_rate < 1.0:
            fail(f"--false-alarm-rate must be between 0 and 1 (exclusive), got {false_alarm_rate:g}", code=2)
        given_preset, preset = preset, preset or DEFAULT_PRESET
        overrides = loader_overrides(pad, allow_silence, seed=seed)
        bars = sys.stderr.isatty() if progress is None else progress
        with guarded(), _left_as_found(out):
            t0 = time.perf_counter()
            if test_normals is not None:
                overrides["split"] = {"test_normals": parse_test_normals(test_normals)}
            if false_alarm_rate is not None:
                overrides["scoring"] = {**overrides.get("scoring", {}), "false_alarm_rate": false_alarm_rate}
            cfg = load_config(preset, config, overrides)
            if data is not None and not data.is_dir():
                raise InputError(data, "dataset folder not found" if not data.exists() else "not a folder")
            prepare_out_dir(out, resume, overwrite, keep=("cache",))
            if resume:  # continue with the settings the run started with; a different request is refused
                cfg = resume_config(out, given_preset, config, overrides)
                data = resumed_data_root(out, data)
            root, cache_dir = data, cache
            if root is None:
                write_config(cfg, out)  # first, so that a run killed while generating can resume
                # the default set is an input, not an output: it lives beside the run folder and is
                # generated once for every run there (seeded, so always the same clips)
                synth_out = out.resolve().parent / SYNTH_DIR
                done = synth_out / "synth-complete"  # written once the whole set is there
                synth_cfg = SYNTH_SETS["default"]
                stamp = json.dumps(dataclasses.asdict(synth_cfg), sort_keys=True)  # which set is there
                if not done.is_file() or done.read_text() != stamp:
                    typer.echo(f"no --data: generating the default synthetic set in {synth_out}")
                    if (synth_out / "dev_data").is_dir():  # an older or half-written set goes first
                        shutil.rmtree(synth_out / "dev_data")
                    generate(synth_out, synth_cfg, workers=2, progress=bars, overwrite=True)
                    atomic_write_text(done, stamp)
                else:
                    typer.echo(f"no --data: the default synthetic set in {synth_out}")
                root = synth_out / "dev_data"
                cache_dir = cache if cache is not None else synth_out / "cache"
            summary = run_pipeline(
                root, out, cfg, methods=method_names() if methods == "all" else split_list(methods),
                machines=None if machines == "all" else split_list(machines), cache_dir=cache_dir, progress=bars,
                echo=typer.echo, paper_reference=data is not None if paper is None else paper, device=device,
                resume=resume, jobs=jobs, on_error=on_error.value)
            if summary.table.methods():
                typer.echo(f"\nofficial score (%): per machine type and overall\n{summary_markdown(summary.table)}")
            else:  # nothing labelled to evaluate (e.g. evaluation clips without ground truth)
                typer.echo("no results table: no test section has labelled normal and anomalous clips "
                           "(give the ground truth to evaluate)")
            report = None
            if cfg.report.enabled:
                typer.echo("\nwriting the report (figures, t-SNE) ...")
                t_report = time.perf_counter()
                report = build_report(out, cfg.report, seed=cfg.seed)
                record_run_stage(out, "report", time.perf_counter() - t_report)
            if not keep_checkpoints:  # finished: --resume reads the pairs back from their done.json
                removed = remove_training_files(out)
                if removed.paths:
                    typer.echo(f"removed {len(removed.paths)} training file(s) (checkpoints and stage weights, "
                               f"{removed.nbytes / 1e6:.1f} MB; the detectors hold what scoring needs); "
                               "--keep-checkpoints keeps them")
            typer.echo("\n" + "\n".join(where_lines(out, summary.table, root, report)))
            typer.echo(f"elapsed: {time.perf_counter() - t0:.1f} s")
