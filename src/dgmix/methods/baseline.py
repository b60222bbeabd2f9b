"""``baseline``: the official DCASE 2022 MobileNetV2 baseline (SPEC §7).

A section classifier trained with cross-entropy; a clip's anomaly score is the mean over its
windows of log((1 - p) / p), p the softmax probability of its own section
(:func:`dgmix.scoring.embed.classifier_scores`). Its encoder can also feed the k-NN back end, which
is what the method x scoring table does with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dgmix.checkpoint import load_checkpoint
from dgmix.config import RunConfig, ScoringConfig
from dgmix.methods.base import Method, TrainJob
from dgmix.methods.detector import section_thresholds
from dgmix.methods.finetuned import load_encoder
from dgmix.methods.machine import MachineData
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.embed import classifier_scores
from dgmix.training import train_baseline
from dgmix.training.finetune import MODEL_FILE, build_model


class BaselineMethod(Method):
    name = "baseline"
    summary = "official MobileNetV2 section classifier, score = mean log((1-p)/p) (SPEC §7)"

    def train(self, job: TrainJob) -> Path | None:
        out = job.out_dir / "baseline"
        mode = job.stage(out, MODEL_FILE)
        if mode is not None:
            train_baseline(job.data_root, job.machine.machine, job.cfg, out, job.cache_dir,
                           progress=job.progress, ctx=job.ctx, resume=mode == "resume")
        return out

    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        return load_encoder(model_dir, cfg)

    def build_detector(
        self, model_dir: Path | None, md: MachineData, cfg: RunConfig, scoring: ScoringConfig,
        cache: dict | None = None,
    ) -> tuple[DetectorBundle, np.ndarray]:
        """The classifier detector; thresholds from the training clips' own scores."""
        model = build_model(cfg, len(md.section_names))
        model.load_state_dict(load_checkpoint(Path(model_dir) / MODEL_FILE)["model"])
        enc, clf = model.encoder.eval(), model.classifier.eval()
        p = cfg.features
        bundle = DetectorBundle("classifier", md.machine, self.name, p, md.section_names,
                                encoder=enc, classifier=clf, model_config=cfg.model)
        tr_sec = md.sections(md.train)
        train_scores = classifier_scores(enc, clf, md.train_feats, tr_sec, p.frames, p.window_hop)
        bundle.thresholds.copy_(torch.as_tensor(section_thresholds(
            train_scores, tr_sec, len(md.section_names), scoring.threshold_percentile)))
        return bundle, classifier_scores(enc, clf, md.test_feats, md.sections(md.test), p.frames, p.window_hop)
