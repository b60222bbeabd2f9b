"""Set-up shared by every training stage: the clips of one machine type and the wrapped model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dgmix.checkpoint import save_checkpoint
from dgmix.config import RunConfig, write_config
from dgmix.data import scan
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text
from dgmix.training.bn import reestimate_batchnorm
from dgmix.training.data import ClassMode, ClipSet, load_clipset, make_cache
from dgmix.training.distributed import DistContext, convert_batchnorm, init_from_env
from dgmix.training.loop import LoopResult, LoopSettings, run_loop

SUMMARY_FILE = "summary.json"
ENCODER_FILE = "encoder.pt"


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


def wrap_model(task_module: nn.Module, ctx: DistContext) -> tuple[nn.Module, nn.Module]:
    """(module to save, module to call): global batch norm + DDP under torchrun."""
    model: nn.Module = task_module
    if ctx.is_distributed:
        task_module = convert_batchnorm(task_module, ctx.device)
        model = DistributedDataParallel(
            task_module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )
    return task_module, model


def start_stage(
    data_root: Path, machine: str, cfg: RunConfig, cache_dir: Path,
    ctx: DistContext | None, progress: bool, classes: ClassMode = "section",
) -> tuple[DistContext, ClipSet]:
    """Process group and seed for a stage, then its training clips (with ``classes`` as the
    classifier targets, see :func:`dgmix.training.data.class_keys`)."""
    ctx = ctx or init_from_env()
    torch.manual_seed(cfg.seed)
    return ctx, training_clips(data_root, machine, cfg, cache_dir, ctx, progress, classes)


def loop_settings(
    stage_cfg, cfg: RunConfig, progress: bool, stop_after_epoch: int | None, desc: str,
    std_warn_threshold: float | None = None,
) -> LoopSettings:
    """The loop settings every stage config (pretrain, finetune, baseline) has in common;
    ``cuda_graphs`` where the stage has it (the baseline does not: "none")."""
    return LoopSettings(
        epochs=stage_cfg.epochs, batch_size=stage_cfg.batch_size,
        windows_per_epoch=stage_cfg.windows_per_epoch, seed=cfg.seed,
        std_warn_threshold=std_warn_threshold, progress=progress, stop_after_epoch=stop_after_epoch,
        desc=desc, cuda_graphs=getattr(stage_cfg, "cuda_graphs", "none"),
    )


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
    setting may be chosen on."""
    path = Path(out_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"steps": result.steps, "epochs": result.epochs_done, "seconds": round(result.seconds, 3),
            "encoder_weight_change": weight_change(start, encoder),
            "encoder_weight_change_weights": weight_change(start, encoder, "weights"),
            "encoder_weight_change_norm_bias": weight_change(start, encoder, "norm_bias"),
            "last_terms": result.last_terms}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return path


def run_stage(task, model: nn.Module, opt: torch.optim.Optimizer, lr_at, settings: LoopSettings, out_dir: Path,
              ctx: DistContext, meta: dict, extra: dict, resume: bool, cfg: RunConfig,
              model_file: str | None = None) -> LoopResult:
    """What every training stage does around :func:`run_loop`: write ``config.yaml``, remember the
    encoder's start, train (``extra`` goes into every checkpoint), re-estimate the encoder's BN
    statistics on the real training windows (precise BN, :func:`dgmix.training.bn.reestimate_batchnorm`;
    always, in every preset), write ``summary.json`` and save ``encoder.pt`` (and with ``model_file``
    the whole task module there), each with ``meta``, so the saved encoder carries the re-estimated
    statistics. Under DDP every rank re-estimates on the same windows, so the synchronised BN layers agree."""
    out_dir = Path(out_dir)
    if ctx.is_main:
        write_config(cfg, out_dir)
    encoder = task.module.encoder
    start = snapshot(encoder)
    result = run_loop(task, model, opt, lr_at, settings, out_dir, ctx, extra, resume=resume)
    was_training = encoder.training
    reestimate_batchnorm(encoder, task.clips.features, cfg.features.frames, cfg.features.window_hop, seed=cfg.seed)
    encoder.train(was_training)
    if ctx.is_main:
        write_summary(out_dir, result, start, encoder)
        save_checkpoint(out_dir / ENCODER_FILE, {"encoder": encoder.state_dict(), **meta})
        if model_file is not None:
            save_checkpoint(out_dir / model_file, {"model": task.module.state_dict(), **meta})
    return result
