"""``dgmix pretrain`` and ``dgmix finetune`` (also under ``torchrun -m dgmix``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dgmix.checkpoint import load_checkpoint
from dgmix.cli.common import default_cache_dir, fail, guarded, loader_overrides, setup
from dgmix.cli.options import AllowSilence, Pad, Preset, Progress, Resume, Seed, Verbose
from dgmix.config import DEFAULT_PRESET, RunConfig, config_from_dict, load_config
from dgmix.rundir import prepare_out_dir
from dgmix.training.loop import LAST

OVERWRITE_HELP = "Start clean in a used OUT (without it, a non-empty OUT needs --resume)."


def resolve_config(preset: str, config: Path | None, out: Path, resume: bool, overrides: dict,
                   overwrite: bool = False) -> RunConfig:
    """The run's config: from the checkpoint when resuming (so it continues exactly), else preset + file
    + ``overrides``.

    A used ``out`` is refused unless ``resume`` or ``overwrite`` (:func:`dgmix.rundir.prepare_out_dir`;
    only rank 0 of a ``torchrun`` job checks and clears it)."""
    if os.environ.get("RANK", "0") == "0":
        prepare_out_dir(out, resume, overwrite)
    if resume:
        return config_from_dict(load_checkpoint(out / LAST)["config"], source=str(out / LAST))
    return load_config(preset, config, overrides)


def _train(kind: str, run, data: Path, machine: str, preset: str, config: Path | None, out: Path,
           cache: Path | None, resume: bool, overwrite: bool, overrides: dict, progress: bool,
           stop_after: int | None, *args) -> None:
    """Resolve the config, run one training stage, print its summary line."""
    from dgmix.training.distributed import shutdown

    with guarded():
        cfg = resolve_config(preset, config, out, resume, overrides, overwrite)
        try:
            result = run(data, machine, cfg, out, cache or default_cache_dir(), *args, resume=resume,
                         progress=progress, stop_after_epoch=stop_after)
        finally:
            shutdown()
        terms = ", ".join(f"{k} {v:.4g}" for k, v in result.last_terms.items())
        method = f" {cfg.pretrain.method}" if kind == "pretrain" else ""
        typer.echo(f"{kind}{method} {machine}: {result.epochs_done} epochs, {result.steps} steps in "
                   f"{result.seconds:.1f} s ({result.windows_per_s:.0f} windows/s); last step: {terms}; "
                   f"checkpoint {result.last_checkpoint}")


def register(app: typer.Typer) -> None:
    @app.command()
    def pretrain(
        data: Path = typer.Option(..., "--data", help="Dataset root (DCASE layout or plain)."),
        machine: str = typer.Option(..., "--machine", help="Machine type, e.g. fan."),
        method: str = typer.Option("dgmix", "--method", help="dgmix or vicreg (SpecAugment ablation)."),
        preset: Preset = DEFAULT_PRESET,
        config: Path | None = typer.Option(None, "--config", help="YAML/TOML file overriding any field."),
        out: Path = typer.Option(..., "--out", help="Run directory."),
        cache: Path = typer.Option(None, "--cache", help="Feature cache dir (default $DGMIX_CACHE or ~/.cache/dgmix)."),
        resume: Resume = False,
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
        pad: Pad = False,
        allow_silence: AllowSilence = False,
        stop_after: int | None = typer.Option(
            None, "--stop-after-epoch", help="End this invocation after epoch N (continue later with --resume)."),
        seed: Seed = None,
        progress: Progress = True,
        verbose: Verbose = False,
    ) -> None:
        """Self-supervised pre-training of one machine type's encoder (paper §3.3)."""
        from dgmix.training import pretrain as run_pretrain

        setup(verbose, preset)
        if method not in ("dgmix", "vicreg"):
            fail(f"--method: expected dgmix or vicreg, got {method!r}", code=2)
        overrides = {"pretrain": {"method": method}, **loader_overrides(pad, allow_silence, seed=seed)}
        _train("pretrain", run_pretrain, data, machine, preset, config, out, cache, resume, overwrite, overrides,
               progress, stop_after)

    @app.command()
    def finetune(
        data: Path = typer.Option(..., "--data", help="Dataset root."),
        machine: str = typer.Option(..., "--machine", help="Machine type."),
        init: str = typer.Option(..., "--init", help="Pre-training RUN_DIR (or encoder.pt), or 'scratch'."),
        preset: Preset = DEFAULT_PRESET,
        config: Path | None = typer.Option(None, "--config"),
        out: Path = typer.Option(..., "--out", help="Run directory."),
        cache: Path = typer.Option(None, "--cache"),
        resume: Resume = False,
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
        pad: Pad = False,
        allow_silence: AllowSilence = False,
        stop_after: int | None = typer.Option(None, "--stop-after-epoch"),
        seed: Seed = None,
        progress: Progress = True,
        verbose: Verbose = False,
    ) -> None:
        """Fine-tune on section-ID classification with mixup, KL and the consistency term (paper §3.4)."""
        from dgmix.training import finetune as run_finetune

        setup(verbose, preset)
        _train("finetune", run_finetune, data, machine, preset, config, out, cache, resume, overwrite,
               loader_overrides(pad, allow_silence, seed=seed), progress, stop_after,
               None if init == "scratch" else Path(init))
