"""Self-supervised pre-training: DG-Mix (paper §3.3, eq. 5) or the VICReg + SpecAugment ablation.

One model per machine type, trained on every training window of that machine type: all
sections, both domains, development and additional-training data.

DG-Mix step: X and X' are two different windows, lambda ~ Beta(0.5, 0.5), X_lambda = lambda X +
(1 - lambda) X'. The three branches share the encoder f and expander h; the loss is eq. (5) on
Z, Z', Z_lambda. VICReg step: two SpecAugment views of the same window; invariance replaces the
consistency term. In both, embeddings are gathered across ranks with gradients first, so the
variance and covariance terms see the global batch.

Optimisation: LARS (momentum 0.9, eta 0.001, the paper's and VICReg's values) at 0.2 x batch / 256
unless ``pretrain.lr`` is set, with a linear warm-up and a cosine decay to ``pretrain.final_lr``
(paper §3.3); or AdamW (``pretrain.optimizer: adamw``, not in the paper) at 1e-3 under the same
schedule shape. Models and batches are channels-last; on CUDA the training windows live on the
device (:mod:`dgmix.training.device_data`). ``pretrain.cuda_graphs`` (not in the paper): "forward"
graphs the branches' forward and backward (:mod:`dgmix.training.graphs`), "step" the whole step
(:mod:`dgmix.training.step_graph`). At the end the encoder's BN statistics are
re-estimated on the real training windows before it is saved
(:func:`dgmix.training.bn.reestimate_batchnorm`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dgmix.augment import PairSampler, SpecAugment, mix
from dgmix.config import PretrainConfig, RunConfig
from dgmix.errors import InputError
from dgmix.losses import DGMixLoss, VICRegLoss
from dgmix.models import build_encoder, build_expander
from dgmix.optim import LARS, WarmupCosine, param_groups, scaled_lr
from dgmix.training.common import ENCODER_FILE as ENCODER_FILE  # re-exported for the methods
from dgmix.training.common import loop_settings, run_stage, start_stage, wrap_model
from dgmix.training.data import ClipSet
from dgmix.training.device_data import DeviceWindows, StepData
from dgmix.training.distributed import DistContext, gather_no_grad, gather_with_grad
from dgmix.training.graphs import maybe_graph
from dgmix.training.loop import LoopResult, plan_steps

#: LARS's rule when ``pretrain.lr`` is null: lr = 0.2 x batch / 256 (paper §3.3: 0.8 at batch 1024).
LARS_LR_PER_256 = 0.2
#: AdamW's lr when ``pretrain.lr`` is null.
ADAMW_LR = 1e-3
#: LARS momentum and trust coefficient (paper §3.3 via VICReg).
LARS_MOMENTUM = 0.9
LARS_ETA = 0.001
#: A warning is logged when the embedding std (mean over dimensions of the batch std) falls below
#: this: the representation may be collapsing.
STD_WARN_THRESHOLD = 0.05


def forward_views(
    fn: Callable[[torch.Tensor], torch.Tensor], views: tuple[torch.Tensor, ...], joined: bool
) -> tuple[torch.Tensor, ...]:
    """``fn`` applied to each view: one pass per view (BN statistics per view, the paper's Fig. 1
    reading), or with ``joined`` one pass over the concatenated views, split back (BN statistics
    over all views together, so an affine-in-training network maps X_lambda to exactly
    lambda f(X) + (1 - lambda) f(X'); not in the paper, the ``joined_views`` setting)."""
    if not joined or len(views) < 2:
        return tuple(fn(v) for v in views)
    return tuple(fn(torch.cat(views, dim=0)).split(views[0].shape[0], dim=0))


class Branches(nn.Module):
    """Weight-sharing branches: each view goes through encoder f then expander h (paper Fig. 1).
    ``joined``: one forward pass over all views (:func:`forward_views`, ``pretrain.joined_views``)."""

    def __init__(self, encoder: nn.Module, expander: nn.Module, joined: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.expander = expander
        self.joined = joined

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return forward_views(lambda x: self.expander(self.encoder(x)), views, self.joined)


def pair_sampler(clips: ClipSet, by_section: bool = False, shares: list[float] | None = None) -> PairSampler:
    """The (X, X') sampler over every window of ``clips``: partners uniform over the machine type
    (pre-training), or with ``by_section`` within the anchor's section and with pair-type
    ``shares`` (fine-tuning, see :mod:`dgmix.augment.pairs`)."""
    if clips.n_windows < 2:
        raise InputError(clips.records[0].path.parent, "mixup needs at least two training windows")
    if not by_section:
        return PairSampler(clips.n_windows)
    clip = clips.windows.clip_of(np.arange(clips.n_windows))
    return PairSampler(clips.n_windows, sections=clips.clip_section[clip], domains=clips.clip_domain[clip],
                       shares=shares)


class MixupTask:
    """What the pre-training and fine-tuning tasks share: the module on the device in channels-last
    layout, and the windows, pairs and lambda of :class:`~dgmix.training.device_data.StepData`
    (host, or on CUDA device-resident)."""

    def __init__(self, clips: ClipSet, cfg: RunConfig, ctx: DistContext, module: nn.Module,
                 pairs: PairSampler | None) -> None:
        self.clips, self.cfg, self.ctx = clips, cfg, ctx
        self.n_windows = clips.n_windows
        self.module = module.to(ctx.device).to(memory_format=torch.channels_last)
        self.data = StepData(clips, pairs, ctx.device, cfg.seed * 1000 + ctx.rank + 1)

    @property
    def resident(self) -> DeviceWindows | None:
        return self.data.resident

    @property
    def index_device(self) -> torch.device:
        """Where the loop should put each epoch's window order (once per epoch)."""
        return self.data.index_device

    @property
    def pairs(self) -> PairSampler | None:
        return self.data.pairs

    @property
    def device_generator(self) -> torch.Generator | None:
        """The generator every draw of a step comes from on the device path (None on the host
        path): the one a whole-step CUDA graph registers (:mod:`dgmix.training.step_graph`)."""
        return self.data.device_gen

    def move(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device, in channels-last layout (as the models of every stage)."""
        return x.to(self.ctx.device, non_blocking=True).contiguous(memory_format=torch.channels_last)


class PretrainTask(MixupTask):
    """One DG-Mix or VICReg step on a batch of window indices."""

    def __init__(self, clips: ClipSet, cfg: RunConfig, ctx: DistContext) -> None:
        p = cfg.pretrain
        module = Branches(build_encoder(cfg.model, cfg.features), build_expander(cfg.model), joined=p.joined_views)
        super().__init__(clips, cfg, ctx, module, pair_sampler(clips) if p.method == "dgmix" else None)
        self.method = p.method
        if p.method == "dgmix":
            self.loss = DGMixLoss(gamma=p.gamma, mu=p.mu, nu=p.nu)
        else:
            self.loss = VICRegLoss(sim=p.gamma, std=p.mu, cov=p.nu)
            self.specaug = SpecAugment()  # the constants of dgmix.augment.specaugment
        self.autocast = p.amp and ctx.device.type == "cuda"

    def forward_views(self, model: nn.Module, views: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        # no cast cache: the same numbers, and what CUDA graphs need (the cached casts of a graph's
        # capture would be freed with the autocast region, then read by every replay)
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False):
            outs = model(*views)
        return tuple(o.float() for o in outs) if self.autocast else outs

    def dgmix_terms(
        self, model: nn.Module, x: torch.Tensor, x2: torch.Tensor, lam: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Eq. (5) on the global batch for local inputs X, X' and mixing weights lambda."""
        # X and X' go to the device first and are mixed there: one host-to-device copy fewer
        x, x2 = self.move(x), self.move(x2)
        z, z2, zm = self.forward_views(model, [x, x2, self.move(mix(x, x2, lam))])
        lam_all = gather_no_grad(lam.to(z.device))
        z, z2, zm = gather_with_grad(z), gather_with_grad(z2), gather_with_grad(zm)
        return {**self.loss(z, z2, zm, lam_all), "embedding_std": z.detach().std(dim=0).mean()}

    def vicreg_terms(self, model: nn.Module, xa: torch.Tensor, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        za, zb = self.forward_views(model, [self.move(xa), self.move(xb)])
        za, zb = gather_with_grad(za), gather_with_grad(zb)
        return {**self.loss(za, zb), "embedding_std": za.detach().std(dim=0).mean()}

    def step(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.method == "dgmix":
            a, b, lam = self.data.pairs_and_lambda(idx, generator, self.cfg.pretrain.mixup_alpha)
            return self.dgmix_terms(model, self.data.windows(a), self.data.windows(b), lam)
        x, gen = self.data.windows(idx), self.data.generator_for(generator)
        return self.vicreg_terms(model, self.specaug(x, generator=gen), self.specaug(x, generator=gen))


def peak_lr(p: PretrainConfig) -> float:
    """The peak learning rate: ``pretrain.lr``, or when it is null the optimizer's rule (LARS
    0.2 x batch / 256, AdamW 1e-3)."""
    if p.lr is not None:
        return p.lr
    return scaled_lr(p.batch_size, LARS_LR_PER_256) if p.optimizer == "lars" else ADAMW_LR


def build_optimizer(
    module: nn.Module, cfg: RunConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, WarmupCosine]:
    """LARS with the paper's settings and the warm-up + cosine schedule (paper §3.3), or with
    ``pretrain.optimizer: adamw`` AdamW at :func:`peak_lr` under the same schedule shape and
    weight decay on conv/linear weights only. ``final_lr`` is the end of the LARS schedule; AdamW's
    ends at the same fraction of its peak, ``final_lr`` over the LARS peak (``lr``, or 0.2 x batch
    / 256). AdamW is not in the paper: it is there for short CPU runs."""
    p = cfg.pretrain
    lr = peak_lr(p)
    if p.optimizer == "adamw":
        lars_lr = p.lr if p.lr is not None else scaled_lr(p.batch_size, LARS_LR_PER_256)
        opt: torch.optim.Optimizer = torch.optim.AdamW(param_groups(module, p.weight_decay), lr=lr)
        final, relative = (p.final_lr / lars_lr if lars_lr > 0 else 0.0), True
    else:
        opt = LARS(module.parameters(), lr=lr, weight_decay=p.weight_decay, momentum=LARS_MOMENTUM, eta=LARS_ETA)
        final, relative = p.final_lr, False
    return opt, WarmupCosine(base_lr=lr, warmup_epochs=p.warmup_epochs, total_epochs=p.epochs, final_lr=final,
                             steps_per_epoch=steps_per_epoch, relative_final=relative)


def pretrain(
    data_root: Path,
    machine: str,
    cfg: RunConfig,
    out_dir: Path,
    cache_dir: Path,
    resume: bool = False,
    progress: bool = True,
    ctx: DistContext | None = None,
    stop_after_epoch: int | None = None,
) -> LoopResult:
    """Pre-train one machine type's encoder; writes ``out_dir/{config.yaml,log.jsonl,last.pt,encoder.pt}``
    (the encoder with its BN statistics re-estimated on the real training windows)."""
    p = cfg.pretrain
    ctx, clips = start_stage(data_root, machine, cfg, cache_dir, ctx, progress)
    task = PretrainTask(clips, cfg, ctx)
    task.module, model = wrap_model(task.module, ctx)
    model = maybe_graph(model, p.cuda_graphs == "forward", ctx)  # "step": run_loop's StepGraph
    settings = loop_settings(p, cfg, progress, stop_after_epoch, f"pretrain {p.method} {machine}",
                             STD_WARN_THRESHOLD)
    steps_per_epoch, _ = plan_steps(task.n_windows, settings, ctx)
    opt, sched = build_optimizer(task.module, cfg, steps_per_epoch)
    meta = {"config": cfg.to_dict(), "machine": machine, "stage": "pretrain", "method": p.method}
    return run_stage(task, model, opt, sched.lr_at, settings, out_dir, ctx, meta,
                     {**meta, "section_names": clips.section_names}, resume, cfg)
