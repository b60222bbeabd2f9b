"""The paper's fine-tuned detectors (Tables 2-3): ``scratch``, ``vicreg`` and ``dgmix``.

Each fine-tunes the encoder on section-ID classification with mixup, KL and the consistency
term (paper §3.4) and scores with the k-NN back end on the encoder's embeddings (§3.5). They
differ only in where the encoder starts: a random initialisation (``scratch``, "proposed without
pre-training"), VICReg + SpecAugment pre-training (``vicreg``, the ablation) or DG-Mix
pre-training (``dgmix``, eq. 5).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from torch import nn

from dgmix.checkpoint import load_checkpoint
from dgmix.config import RunConfig
from dgmix.errors import InputError
from dgmix.methods.base import Method, TrainJob
from dgmix.models import build_baseline_encoder, build_encoder
from dgmix.training import finetune, pretrain
from dgmix.training.finetune import MODEL_FILE
from dgmix.training.pretrain import ENCODER_FILE


def load_encoder(model_dir: Path, cfg: RunConfig, baseline: bool = False) -> nn.Module:
    """The encoder saved in ``model_dir/encoder.pt``, built for ``cfg``'s model and feature shape
    (``baseline``: the official baseline's network, :mod:`dgmix.models.baseline_net`)."""
    enc = (build_baseline_encoder if baseline else build_encoder)(cfg.model, cfg.features)
    path = Path(model_dir) / ENCODER_FILE
    try:
        enc.load_state_dict(load_checkpoint(path)["encoder"])
    except (KeyError, RuntimeError) as exc:
        raise InputError(path, f"encoder weights do not fit this configuration: {str(exc).splitlines()[0]}") from None
    return enc.eval()


class FinetunedMethod(Method):
    """Fine-tuning from a pre-trained (``pretrain_method``) or random (None) encoder."""

    def __init__(self, name: str, pretrain_method: Literal["dgmix", "vicreg"] | None, summary: str) -> None:
        self.name = name  # type: ignore[misc]
        self.summary = summary  # type: ignore[misc]
        self.pretrain_method = pretrain_method

    def train(self, job: TrainJob) -> Path | None:
        common = dict(progress=job.progress, ctx=job.ctx)
        init = None
        if self.pretrain_method is not None:
            cfg = dataclasses.replace(job.cfg, pretrain=dataclasses.replace(job.cfg.pretrain,
                                                                            method=self.pretrain_method))
            init = job.out_dir / "pretrain"
            mode = job.stage(init, ENCODER_FILE)
            if mode is not None:
                pretrain(job.data_root, job.machine.machine, cfg, init, job.cache_dir, resume=mode == "resume",
                         **common)
        mode = job.stage(job.out_dir / "finetune", MODEL_FILE)
        if mode is not None:
            finetune(job.data_root, job.machine.machine, job.cfg, job.out_dir / "finetune", job.cache_dir,
                     init=init, resume=mode == "resume", **common)
        return job.out_dir / "finetune"

    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        return load_encoder(model_dir, cfg)


SCRATCH = FinetunedMethod("scratch", None, "fine-tuning from a random encoder (proposed without pre-training)")
VICREG = FinetunedMethod("vicreg", "vicreg", "VICReg + SpecAugment pre-training, then fine-tuning (ablation)")
DGMIX = FinetunedMethod("dgmix", "dgmix", "DG-Mix pre-training (eq. 5), then fine-tuning (the paper's method)")
