"""Set-up shared by every training stage: the clips of one machine type and the wrapped model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dgmix.config import RunConfig
from dgmix.data import scan
from dgmix.errors import InputError
from dgmix.training.data import ClassMode, ClipSet, load_clipset, make_cache
from dgmix.training.distributed import DistContext, convert_batchnorm, init_from_env
from dgmix.training.loop import LoopSettings


def training_clips(
    data_root: Path, machine: str, cfg: RunConfig, cache_dir: Path, ctx: DistContext, progress: bool,
    classes: ClassMode = "section",
) -> ClipSet:
    """Every training clip of ``machine`` under ``data_root`` (all sections, both domains,
    development and additional training data), features filled into the cache by rank 0."""
    records = scan(Path(data_root)).select(machine=machine, split="train")
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
