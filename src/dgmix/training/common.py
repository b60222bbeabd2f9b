"""Set-up shared by every training stage: the clips of one machine type and the wrapped model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dgmix.config import RunConfig
from dgmix.data import scan
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text
from dgmix.models import fit_input_norm
from dgmix.training.data import ClassMode, ClipSet, load_clipset, make_cache
from dgmix.training.distributed import DistContext, convert_batchnorm, init_from_env
from dgmix.training.loop import LoopResult, LoopSettings, run_loop

SUMMARY_FILE = "summary.json"


def training_clips(
    data_root: Path, machine: str, cfg: RunConfig, cache_dir: Path, ctx: DistContext, progress: bool,
    classes: ClassMode = "section",
) -> ClipSet:
    """Every training clip of ``machine`` under ``data_root`` (all sections, both domains,
    development and additional training data; for layouts without a split, the training side of
    ``cfg.split``), features filled into the cache by rank 0."""
    records = scan(Path(data_root), split=cfg.split).select(machine=machine, split="train")
    if not records:
        raise InputError(data_root, f"no training clips for machine type {machine!r}")
    cache = make_cache(cache_dir, cfg.features)
    if ctx.is_main:
        report = cache.fill([r.path for r in records], workers=1 if ctx.is_distributed else 2,
                            progress=progress)
        if report.errors:
            path, msg = report.errors[0]
            raise InputError(path, f"{msg} ({len(report.errors)} unreadable training clip(s))")
    if ctx.is_distributed:
        torch.distributed.barrier()
    return load_clipset(records, cache, cfg.features, classes=classes)


def wrap_model(task_module: nn.Module, ctx: DistContext, compile_model: bool = False) -> tuple[nn.Module, nn.Module]:
    """(module to save, module to call): global batch norm + DDP under torchrun, optional compile."""
    model: nn.Module = task_module
    if ctx.is_distributed:
        task_module = convert_batchnorm(task_module, ctx.device)
        model = DistributedDataParallel(
            task_module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )
    if compile_model:
        model = torch.compile(model)
    return task_module, model


def start_stage(
    data_root: Path, machine: str, cfg: RunConfig, stage_cfg, cache_dir: Path,
    ctx: DistContext | None, progress: bool, classes: ClassMode = "section",
) -> tuple[DistContext, ClipSet]:
    """Process group, threads and seed for a stage, then its training clips (with ``classes`` as
    the classifier targets, see :func:`dgmix.training.data.class_keys`)."""
    ctx = ctx or init_from_env()
    if stage_cfg.threads:
        torch.set_num_threads(stage_cfg.threads)
    torch.manual_seed(cfg.seed)
    return ctx, training_clips(data_root, machine, cfg, cache_dir, ctx, progress, classes)


def loop_settings(
    stage_cfg, cfg: RunConfig, progress: bool, stop_after_epoch: int | None, desc: str,
    std_warn_threshold: float | None = None,
) -> LoopSettings:
    """The loop settings every stage config (pretrain, finetune, baseline) has in common."""
    return LoopSettings(
        epochs=stage_cfg.epochs, batch_size=stage_cfg.batch_size,
        windows_per_epoch=stage_cfg.windows_per_epoch, seed=cfg.seed, log_every=stage_cfg.log_every,
        std_warn_threshold=std_warn_threshold, progress=progress, stop_after_epoch=stop_after_epoch,
        desc=desc,
    )


def refresh_batchnorm(encoder: nn.Module, clips: ClipSet, cfg: RunConfig, stage_cfg) -> None:
    """With ``stage_cfg.reestimate_bn``, replace the encoder's BN running statistics by those of the
    real (unmixed) training windows before it is saved (:mod:`dgmix.training.bn`).

    Why an option: during mixup training the running statistics average real and mixed batches,
    and scoring sees only real windows; the paper does not re-estimate them. Under DDP every rank
    calls this with the same windows, so the synchronised BN layers agree."""
    if not getattr(stage_cfg, "reestimate_bn", False):
        return
    from dgmix.training.bn import reestimate_batchnorm

    was_training = encoder.training
    reestimate_batchnorm(encoder, clips.features, cfg.features.frames, cfg.features.window_hop, seed=cfg.seed)
    encoder.train(was_training)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module``'s trainable parameters (for :func:`weight_change`)."""
    return {n: p.detach().float().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}


def weight_change(start: dict[str, torch.Tensor], module: nn.Module, which: str = "all") -> float:
    """Relative change ||theta - theta_0|| / ||theta_0|| of ``module``'s parameters since ``start``
    (the tensors concatenated): how far a stage moved the encoder. ``which``: "all", "weights"
    (convolution and linear kernels, ndim > 1) or "norm_bias" (BN parameters and biases, which LARS
    does not adapt and AdamW here does not decay)."""
    now = dict(module.named_parameters())
    keep = {"all": lambda t: True, "weights": lambda t: t.ndim > 1, "norm_bias": lambda t: t.ndim <= 1}[which]
    names = [n for n, p in start.items() if keep(p)]
    diff = sum(float((now[n].detach().float().cpu() - start[n]).pow(2).sum()) for n in names)
    norm = sum(float(start[n].pow(2).sum()) for n in names)
    return math.sqrt(diff / norm) if norm > 0 else math.nan


def write_summary(out_dir: Path, result: LoopResult, start: dict[str, torch.Tensor], encoder: nn.Module) -> Path:
    """``out_dir/summary.json``: the stage's training-only signals (last loss terms, embedding std,
    the encoder's relative weight change, steps, seconds). These, never test labels, are what a
    setting may be chosen on (issue 10)."""
    path = Path(out_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"steps": result.steps, "epochs": result.epochs_done, "seconds": round(result.seconds, 3),
            "encoder_weight_change": weight_change(start, encoder),
            "encoder_weight_change_weights": weight_change(start, encoder, "weights"),
            "encoder_weight_change_norm_bias": weight_change(start, encoder, "norm_bias"),
            "last_terms": result.last_terms}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return path


def fit_encoder_input(encoder: nn.Module, clips: ClipSet) -> None:
    """Fit the encoder's input standardisation (``model.input_norm``) on the training clips; a no-op
    for an encoder without one (the features are then not touched)."""
    if getattr(encoder, "input_norm", None) is not None:
        fit_input_norm(encoder, clips.features)


def run_stage(task, model: nn.Module, opt: torch.optim.Optimizer, lr_at, settings: LoopSettings, out_dir: Path,
              ctx: DistContext, extra: dict, resume: bool, cfg: RunConfig, stage_cfg) -> LoopResult:
    """What every training stage does around :func:`run_loop`: remember the encoder's start, train,
    re-estimate BN if asked (:func:`refresh_batchnorm`) and write ``summary.json``. The caller saves
    its own checkpoints afterwards."""
    start = snapshot(task.module.encoder)
    result = run_loop(task, model, opt, lr_at, settings, out_dir, ctx, extra, resume=resume)
    refresh_batchnorm(task.module.encoder, task.clips, cfg, stage_cfg)
    if ctx.is_main:
        write_summary(out_dir, result, start, task.module.encoder)
    return result
