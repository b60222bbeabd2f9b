"""``random``: the control row. A randomly initialised Table 1 encoder whose BatchNorm statistics
are re-estimated on the machine type's training windows, scored with the k-NN back end like the
learned methods. Not in the paper: a learned method has learned something only when it beats this.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dgmix.checkpoint import save_checkpoint
from dgmix.config import RunConfig
from dgmix.methods.base import Method, TrainJob
from dgmix.methods.finetuned import load_encoder
from dgmix.models import build_encoder
from dgmix.training.bn import reestimate_batchnorm
from dgmix.training.pretrain import ENCODER_FILE


class RandomEncoderMethod(Method):
    name = "random"
    summary = "random Table 1 encoder, BN statistics re-estimated on the training windows + k-NN (control)"
    paper = False

    def train(self, job: TrainJob) -> Path | None:
        cfg = job.cfg
        torch.manual_seed(cfg.seed)
        enc = build_encoder(cfg.model, cfg.features)
        used = reestimate_batchnorm(enc, job.machine.train_feats, cfg.features.frames, cfg.features.window_hop,
                                    seed=cfg.seed)
        out = job.out_dir / "random"
        save_checkpoint(out / ENCODER_FILE, {"encoder": enc.state_dict(), "config": cfg.to_dict(),
                                             "machine": job.machine.machine, "stage": "random",
                                             "bn_windows": used})
        return out

    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        return load_encoder(model_dir, cfg)
