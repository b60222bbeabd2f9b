"""``dgmix pretrain`` and ``dgmix finetune`` (also under ``torchrun -m dgmix``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dgmix.checkpoint import load_checkpoint
from dgmix.cli.common import default_cache_dir, fail, loader_overrides, run_guarded, setup_logging
from dgmix.cli.run import PRESET_HELP
from dgmix.config import DEFAULT_PRESET, PRESETS, RunConfig, config_from_dict, load_config
from dgmix.rundir import prepare_out_dir
from dgmix.training.loop import LAST

OVERWRITE_HELP = "Start clean in a used OUT (without it, a non-empty OUT needs --resume)."
PAD_HELP = "Zero-pad clips shorter than one window (features.pad)."
SILENCE_HELP = "Accept all-zero clips (features.allow_silence)."


def resolve_config(
    preset: str, config: Path | None, out: Path, resume: bool, overrides: dict, overwrite: bool = False
) -> RunConfig:
    """The run's config: from the checkpoint when resuming (so it continues exactly), else preset + file.

    A used ``out`` is refused unless ``resume`` or ``overwrite`` (:func:`dgmix.rundir.prepare_out_dir`;
    only rank 0 of a ``torchrun`` job checks and clears it)."""
    if preset not in PRESETS:
        fail(f"--preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", code=2)
    if os.environ.get("RANK", "0") == "0":
        prepare_out_dir(out, resume, overwrite)
    if resume:
        state = load_checkpoint(out / LAST)
        return config_from_dict(state["config"], source=str(out / LAST))
    return load_config(preset, config, overrides)


def _summary(kind: str, result, out: Path) -> None:
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.last_terms.items())
    typer.echo(
        f"{kind}: {result.epochs_done} epochs, {result.steps} steps in {result.seconds:.1f} s "
        f"({result.windows_per_s:.0f} windows/s); last step: {terms}; checkpoint {result.last_checkpoint}"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def pretrain(
        data: Path = typer.Option(..., "--data", help="Dataset root (DCASE layout or plain)."),
        machine: str = typer.Option(..., "--machine", help="Machine type, e.g. fan."),
        method: str = typer.Option("dgmix", "--method", help="dgmix or vicreg (SpecAugment ablation)."),
        preset: str = typer.Option(DEFAULT_PRESET, "--preset", help=PRESET_HELP),
        config: Path | None = typer.Option(None, "--config", help="YAML/TOML file overriding any field."),
        out: Path = typer.Option(..., "--out", help="Run directory."),
        cache: Path = typer.Option(None, "--cache", help="Feature cache dir (default $DGMIX_CACHE or ~/.cache/dgmix)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt exactly."),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
        pad: bool = typer.Option(False, "--pad", help=PAD_HELP),
        allow_silence: bool = typer.Option(False, "--allow-silence", help=SILENCE_HELP),
        stop_after: int | None = typer.Option(
            None, "--stop-after-epoch", help="End this invocation after epoch N (continue later with --resume)."
        ),
        seed: int | None = typer.Option(None, "--seed"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Self-supervised pre-training of one machine type's encoder (paper §3.3)."""
        setup_logging(verbose)
        if method not in ("dgmix", "vicreg"):
            fail(f"--method: expected dgmix or vicreg, got {method!r}", code=2)
        overrides: dict = {"pretrain": {"method": method}, **loader_overrides(pad, allow_silence)}
        if seed is not None:
            overrides["seed"] = seed

        def go():
            from dgmix.training import pretrain as run_pretrain
            from dgmix.training.distributed import shutdown

            cfg = resolve_config(preset, config, out, resume, overrides, overwrite)
            try:
                result = run_pretrain(data, machine, cfg, out, cache or default_cache_dir(),
                                      resume=resume, progress=progress, stop_after_epoch=stop_after)
            finally:
                shutdown()
            _summary(f"pretrain {cfg.pretrain.method} {machine}", result, out)

        run_guarded(go)

    @app.command()
    def finetune(
        data: Path = typer.Option(..., "--data", help="Dataset root."),
        machine: str = typer.Option(..., "--machine", help="Machine type."),
        init: str = typer.Option(..., "--init", help="Pre-training RUN_DIR (or encoder.pt), or 'scratch'."),
        preset: str = typer.Option(DEFAULT_PRESET, "--preset", help=PRESET_HELP),
        config: Path | None = typer.Option(None, "--config"),
        out: Path = typer.Option(..., "--out", help="Run directory."),
        cache: Path = typer.Option(None, "--cache"),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt exactly."),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
        pad: bool = typer.Option(False, "--pad", help=PAD_HELP),
        allow_silence: bool = typer.Option(False, "--allow-silence", help=SILENCE_HELP),
        stop_after: int | None = typer.Option(None, "--stop-after-epoch"),
        seed: int | None = typer.Option(None, "--seed"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Fine-tune on section-ID classification with mixup, KL and the consistency term (paper §3.4)."""
        setup_logging(verbose)
        overrides: dict = {**({} if seed is None else {"seed": seed}), **loader_overrides(pad, allow_silence)}

        def go():
            from dgmix.training import finetune as run_finetune
            from dgmix.training.distributed import shutdown

            cfg = resolve_config(preset, config, out, resume, overrides, overwrite)
            init_path = None if init == "scratch" else Path(init)
            try:
                result = run_finetune(data, machine, cfg, out, cache or default_cache_dir(), init_path,
                                      resume=resume, progress=progress, stop_after_epoch=stop_after)
            finally:
                shutdown()
            _summary(f"finetune {machine}", result, out)

        run_guarded(go)
