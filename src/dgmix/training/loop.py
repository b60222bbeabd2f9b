"""The epoch loop shared by pre-training, fine-tuning and the baseline.

A *task* (see :class:`Task`) owns the model, the loss and how one batch of window indices becomes
a dict of loss terms. This loop owns everything else: sharding with ``DistributedSampler``, the
learning-rate schedule, non-finite-loss detection, the JSON-lines log, progress, and atomic
per-epoch checkpoints with exact resume. With ``cuda_graphs: step`` (``LoopSettings.cuda_graphs``)
each step is :func:`dgmix.training.step_graph.train_step`, captured in a CUDA graph on CUDA
(:class:`~dgmix.training.step_graph.StepGraph`); otherwise it runs eagerly here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from dgmix.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dgmix.errors import TrainingError
from dgmix.training.distributed import DistContext
from dgmix.training.log import JsonlLogger
from dgmix.training.step_graph import StepGraph, plain_lr_state

log = logging.getLogger("dgmix.training")

LAST = "last.pt"


class Task(Protocol):
    """What the loop needs from a training stage."""

    module: nn.Module  # the trainable module (unwrapped)
    n_windows: int

    def step(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Loss terms for one batch of window indices; must contain ``loss`` (and may contain
        ``embedding_std``, the collapse signal)."""
        ...


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int  # global batch
    windows_per_epoch: int | None
    seed: int
    std_warn_threshold: float | None = None
    progress: bool = True
    desc: str = "train"
    stop_after_epoch: int | None = None  # end this invocation after that many epochs (resume later)
    cuda_graphs: str = "none"  # "step": StepGraph; "none" / "forward" (a wrapped model): the eager step


@dataclass
class LoopResult:
    epochs_done: int
    steps: int
    last_checkpoint: Path
    seconds: float
    windows_per_s: float
    last_terms: dict[str, float]


def plan_steps(n_windows: int, s: LoopSettings, ctx: DistContext) -> tuple[int, int]:
    """(steps per epoch, per-rank batch) for ``n_windows`` windows under ``s`` and ``ctx``."""
    per_rank_batch = s.batch_size // ctx.world_size
    if per_rank_batch < 2 or s.batch_size % ctx.world_size:
        raise TrainingError(f"batch size {s.batch_size} must be a multiple of the world size {ctx.world_size} "
                            "with at least 2 samples per rank")
    per_epoch = n_windows if s.windows_per_epoch is None else min(n_windows, s.windows_per_epoch)
    steps = (per_epoch // ctx.world_size) // per_rank_batch
    if steps < 1:
        raise TrainingError(f"only {per_epoch} windows per epoch for a batch of {s.batch_size}: "
                            "lower the batch size or add data")
    return steps, per_rank_batch


def run_loop(task: Task, model: nn.Module, optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float] | None,
             settings: LoopSettings, run_dir: Path, ctx: DistContext, extra_state: dict[str, Any],
             resume: bool = False) -> LoopResult:
    """Train ``model`` (possibly DDP-wrapped ``task.module``) for ``settings.epochs`` epochs.

    ``lr_at(step)`` sets every param group's lr before each step (None: keep the optimizer's).
    ``extra_state`` (config, section map, ...) is stored in every checkpoint. With
    ``settings.cuda_graphs == "step"`` the steps go through a
    :class:`~dgmix.training.step_graph.StepGraph` (set up after a resume has loaded the optimizer),
    which reads the lr from a device tensor; the checkpoints store it as a number either way.
    """
    run_dir = Path(run_dir)
    steps_per_epoch, per_rank_batch = plan_steps(task.n_windows, settings, ctx)
    generator = torch.Generator().manual_seed(settings.seed * 1000 + ctx.rank)
    # the sampler only needs the number of windows: it shards and shuffles their indices
    sampler = DistributedSampler(range(task.n_windows), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=settings.seed, drop_last=True)
    start_epoch, step = 0, 0
    ckpt_path = run_dir / LAST
    if resume:
        state = load_checkpoint(ckpt_path)
        task.module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"][ctx.rank] if ctx.rank < len(state["rng"]) else state["rng"][0], generator)
        start_epoch, step = int(state["epoch"]), int(state["step"])
        if ctx.is_main:
            log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    # a fresh run starts the log empty; a resumed one drops the rows written after its checkpoint
    logger = JsonlLogger(run_dir / "log.jsonl", enabled=ctx.is_main, keep_until_step=step if resume else None)
    warned, saved_epoch, seen, t_start = False, start_epoch, 0, time.perf_counter()
    last_terms: dict[str, float] = {}
    bar = tqdm(total=max(0, settings.epochs - start_epoch) * steps_per_epoch, desc=settings.desc,
               disable=not (settings.progress and ctx.is_main), leave=False, dynamic_ncols=True)
    stop = settings.stop_after_epoch
    end_epoch = settings.epochs if stop is None else min(settings.epochs, stop)
    runner = StepGraph(task, model, optimizer, ctx) if settings.cuda_graphs == "step" else None

    def check_finite(loss: torch.Tensor, epoch: int) -> None:
        if not torch.isfinite(loss.detach()).all():
            where = (f"the last good checkpoint is {ckpt_path} (after epoch {saved_epoch})"
                     if saved_epoch else "no checkpoint had been written yet")
            raise TrainingError(
                f"{settings.desc}: non-finite loss ({float(loss.detach())}) at epoch {epoch} "
                f"step {step}; training stopped and {where}"
            )

    try:
        for epoch in range(start_epoch, end_epoch):
            sampler.set_epoch(epoch)
            order = torch.tensor(list(iter(sampler)), dtype=torch.long)
            # a task whose data lives on the device takes its indices there: one copy per epoch
            order = order.to(getattr(task, "index_device", torch.device("cpu")))
            model.train()
            for b in range(steps_per_epoch):
                idx = order[b * per_rank_batch : (b + 1) * per_rank_batch]
                t0 = time.perf_counter()
                if runner is not None:
                    # the whole step, then the check (the update has run; the checkpoint is older)
                    lr = runner.base_lr if lr_at is None else lr_at(step)
                    terms = runner.step(idx, lr, generator)
                    check_finite(terms["loss"], epoch)
                else:
                    if lr_at is not None:
                        for group in optimizer.param_groups:
                            group["lr"] = lr_at(step)
                    lr = float(optimizer.param_groups[0]["lr"])  # a number, or a 0-d tensor
                    terms = task.step(model, idx, generator)
                    loss = terms["loss"]
                    check_finite(loss, epoch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                # float() waits for the device, so dt covers the whole step on CUDA too
                last_terms = {k: float(v.detach()) for k, v in terms.items()}
                dt = time.perf_counter() - t0
                seen += idx.numel() * ctx.world_size
                step += 1
                std = last_terms.get("embedding_std")
                if std is not None and settings.std_warn_threshold is not None and std < settings.std_warn_threshold \
                        and not warned and ctx.is_main:
                    warned = True
                    msg = (f"embedding std {std:.4f} < {settings.std_warn_threshold} at epoch {epoch}: "
                           "the representation may be collapsing")
                    log.warning(msg)
                    tqdm.write(f"warning: {msg}")
                logger.log({
                    "epoch": epoch, "step": step, "lr": lr,
                    **last_terms, "windows_per_s": idx.numel() * ctx.world_size / max(dt, 1e-9),
                })
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{last_terms['loss']:.3f}")
            payload = {"model": task.module.state_dict(), "optimizer": plain_lr_state(optimizer.state_dict()),
                       "scheduler": {"step": step, "steps_per_epoch": steps_per_epoch}, "epoch": epoch + 1,
                       "step": step, "rng": _gather_rng(generator, ctx), **extra_state}
            if ctx.is_main:
                save_checkpoint(ckpt_path, payload)
            saved_epoch = epoch + 1
            if ctx.is_distributed:
                dist.barrier()
    finally:
        bar.close()
        logger.close()
    seconds = time.perf_counter() - t_start
    return LoopResult(
        epochs_done=saved_epoch, steps=step, last_checkpoint=ckpt_path, seconds=seconds,
        windows_per_s=seen / seconds if seconds > 0 else math.nan, last_terms=last_terms,
    )


def _gather_rng(generator: torch.Generator, ctx: DistContext) -> list[dict[str, torch.Tensor]]:
    """RNG states of every rank (rank order), so a resumed run draws the same numbers."""
    mine = rng_state(generator)
    if not ctx.is_distributed:
        return [mine]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, mine)
    return out
