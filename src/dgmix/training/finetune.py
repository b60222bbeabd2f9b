"""Fine-tuning on section-ID classification (paper §3.4) and the official baseline's classifier.

Fine-tuning: encoder + classifier Linear(320,128)-ReLU-Linear(128, n_classes), where the classes
are the sections (paper) or, with ``finetune.classes``, sections x attribute values (see
:func:`dgmix.training.data.class_keys`). Pairs (X, X') are drawn within the anchor's section
(paper §3.4: "a mixup strategy on the source and target data for each section"), with
domain-balanced shares: each pair is source x source, source x target or target x target with the
probabilities ``finetune.pair_shares`` (default equal shares; the paper names intra- and
inter-domain pairs and no proportion; :mod:`dgmix.augment.pairs`). The mixed input X_lambda is
classified against the mixed one-hot label with a KL divergence (one-hot itself when the classes
are the sections, since both windows share one), and gamma times the consistency term (eq. 1,
mean over batch and dimensions) is applied to the encoder outputs Y, Y', Y_lambda. AdamW, lr
1e-4, weight decay 1e-4, batch 64; the paper does not say which parameters decay: here only the
conv/linear weights do, biases and BN parameters are not decayed
(:func:`dgmix.optim.param_groups`). The paper gives no epoch count; 20 is the default.

Baseline: the same encoder body trained as a plain section classifier with cross-entropy
(the official DCASE 2022 baseline's settings: Adam, lr 1e-5, batch 32, 20 epochs). Its anomaly
score is computed by :func:`dgmix.scoring.embed.classifier_scores`.

``finetune.cuda_graphs`` (not in the paper): "forward" graphs the model's forward and backward
(:mod:`dgmix.training.graphs`), "step" the whole step, draws and AdamW update included
(:mod:`dgmix.training.step_graph`).

Both stages train channels-last and end by re-estimating the encoder's BN statistics on the real
training windows before saving (:func:`dgmix.training.bn.reestimate_batchnorm`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dgmix.augment import mix, mix_labels
from dgmix.checkpoint import load_checkpoint
from dgmix.config import RunConfig
from dgmix.errors import InputError
from dgmix.losses import MixupKLLoss
from dgmix.models import build_baseline_classifier, build_baseline_encoder, build_classifier, build_encoder
from dgmix.optim import param_groups
from dgmix.training.common import loop_settings, run_stage, start_stage, wrap_model
from dgmix.training.data import ClipSet
from dgmix.training.distributed import DistContext, gather_no_grad, gather_with_grad
from dgmix.training.graphs import maybe_graph
from dgmix.training.loop import LoopResult
from dgmix.training.pretrain import ENCODER_FILE, MixupTask, forward_views, pair_sampler

MODEL_FILE = "model.pt"


class EncoderClassifier(nn.Module):
    """Encoder f plus the section classifier (paper §3.4). ``joined``: one encoder pass over all
    views (:func:`dgmix.training.pretrain.forward_views`, ``finetune.joined_views``)."""

    def __init__(self, encoder: nn.Module, classifier: nn.Module, joined: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier
        self.joined = joined

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Encoder outputs of every view, then the logits of the last view."""
        ys = forward_views(self.encoder, views, self.joined)
        return (*ys, self.classifier(ys[-1]))


def build_model(cfg: RunConfig, n_classes: int, joined: bool = False) -> EncoderClassifier:
    """Encoder (for ``cfg.features``' window shape) + classifier over ``n_classes`` classes."""
    return EncoderClassifier(build_encoder(cfg.model, cfg.features), build_classifier(cfg.model, n_classes),
                             joined=joined)


def build_baseline_model(cfg: RunConfig, n_classes: int) -> EncoderClassifier:
    """The official DCASE 2022 baseline: its MobileNetV2 + ``Dense(n_classes)`` (:mod:`dgmix.models.baseline_net`)."""
    return EncoderClassifier(build_baseline_encoder(cfg.model, cfg.features),
                             build_baseline_classifier(cfg.model, n_classes))


def load_pretrained_encoder(init: Path, encoder: nn.Module) -> dict:
    """Load ``init/encoder.pt`` (or a file) into ``encoder``; returns the checkpoint's metadata."""
    path = Path(init)
    if path.is_dir():
        path = path / ENCODER_FILE
    state = load_checkpoint(path)
    if "encoder" not in state:
        raise InputError(path, "not a dgmix encoder checkpoint (no 'encoder' entry)")
    try:
        encoder.load_state_dict(state["encoder"])
    except RuntimeError as exc:
        raise InputError(path, f"encoder weights do not fit this model: {str(exc).splitlines()[0]}") from None
    return {k: v for k, v in state.items() if k != "encoder"}


class FinetuneTask(MixupTask):
    """Mixup + KL + consistency on the encoder (paper §3.4); pairs within the anchor's section."""

    def __init__(self, clips: ClipSet, cfg: RunConfig, ctx: DistContext) -> None:
        f = cfg.finetune
        self.n_classes = len(clips.class_names)
        super().__init__(clips, cfg, ctx, build_model(cfg, self.n_classes, joined=f.joined_views),
                         pair_sampler(clips, by_section=True, shares=f.pair_shares))
        self.loss = MixupKLLoss(gamma=f.gamma)

    def step(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        d, dev = self.data, self.ctx.device
        a, b, lam = d.pairs_and_lambda(idx, generator, self.cfg.finetune.mixup_alpha)
        # labels from the class table: no range check on the host (no synchronisation, graph-safe)
        target = mix_labels(d.labels(a), d.labels(b), lam.to(d.index_device), self.n_classes, check=False)
        x, x2 = self.move(d.windows(a)), self.move(d.windows(b))  # mixed on the device, as in pre-training
        y, y2, ym, logits = model(x, x2, self.move(mix(x, x2, lam)))
        terms = self.loss(gather_with_grad(logits), gather_no_grad(target.to(dev)), gather_with_grad(y),
                          gather_with_grad(y2), gather_with_grad(ym), gather_no_grad(lam.to(dev)))
        return {**terms, "embedding_std": y.detach().std(dim=0).mean()}


class BaselineTask(MixupTask):
    """The official baseline's section classifier: cross-entropy on single windows (no pairs)."""

    def __init__(self, clips: ClipSet, cfg: RunConfig, ctx: DistContext) -> None:
        super().__init__(clips, cfg, ctx, build_baseline_model(cfg, len(clips.section_names)), None)

    def step(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        y, logits = model(self.move(self.data.windows(idx)))
        target = self.clips.window_sections(idx.cpu().numpy()).to(self.ctx.device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(dim=1) == target).float().mean()
        return {"loss": loss, "accuracy": acc, "embedding_std": y.detach().std(dim=0).mean()}


def _train(task, opt: torch.optim.Optimizer, model: nn.Module, cfg: RunConfig, stage_cfg, stage: str, machine: str,
           out_dir: Path, ctx: DistContext, resume: bool, progress: bool, stop_after_epoch: int | None,
           extra: dict | None = None) -> LoopResult:
    """Run a classifier stage (:func:`run_stage`, which saves ``encoder.pt``) and save ``model.pt``."""
    settings = loop_settings(stage_cfg, cfg, progress, stop_after_epoch, f"{stage} {machine}")
    meta = {"config": cfg.to_dict(), "machine": machine, "stage": stage,
            "section_names": task.clips.section_names, "class_names": task.clips.class_names}
    return run_stage(task, model, opt, None, settings, out_dir, ctx, meta, {**meta, **(extra or {})}, resume, cfg,
                     model_file=MODEL_FILE)


def finetune(
    data_root: Path,
    machine: str,
    cfg: RunConfig,
    out_dir: Path,
    cache_dir: Path,
    init: Path | None,
    resume: bool = False,
    progress: bool = True,
    ctx: DistContext | None = None,
    stop_after_epoch: int | None = None,
) -> LoopResult:
    """Fine-tune from ``init`` (a pre-training run dir or encoder file) or from scratch (None)."""
    f = cfg.finetune
    ctx, clips = start_stage(data_root, machine, cfg, cache_dir, ctx, progress, classes=f.classes)
    task = FinetuneTask(clips, cfg, ctx)
    if init is not None:
        init_meta = load_pretrained_encoder(init, task.module.encoder)
        if init_meta.get("machine") not in (None, machine):
            raise InputError(init, f"encoder was pre-trained on {init_meta['machine']!r}, not {machine!r}")
    task.module, model = wrap_model(task.module, ctx)
    model = maybe_graph(model, f.cuda_graphs == "forward", ctx)  # "step": run_loop's StepGraph
    # weight decay on conv/linear weights only (biases and BN parameters: none)
    opt = torch.optim.AdamW(param_groups(task.module, f.weight_decay), lr=f.lr, weight_decay=f.weight_decay)
    return _train(task, opt, model, cfg, f, "finetune", machine, Path(out_dir), ctx, resume, progress,
                  stop_after_epoch, {"init": str(init) if init else "scratch"})


def train_baseline(
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
    """Train the official MobileNetV2 baseline's section classifier."""
    b = cfg.baseline
    ctx, clips = start_stage(data_root, machine, cfg, cache_dir, ctx, progress)
    task = BaselineTask(clips, cfg, ctx)
    task.module, model = wrap_model(task.module, ctx)
    opt = torch.optim.Adam(task.module.parameters(), lr=b.lr)
    return _train(task, opt, model, cfg, b, "baseline", machine, Path(out_dir), ctx, resume, progress,
                  stop_after_epoch)
