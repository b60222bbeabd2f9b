"""``baseline``: the official DCASE 2022 MobileNetV2 baseline (the paper's Table 2, left column).

Its network is the baseline's own (:mod:`dgmix.models.baseline_net`: Keras MobileNetV2, alpha
0.5, average pooling, a dense softmax over sections), not the Table 1 encoder. A section
classifier trained with cross-entropy; a clip's anomaly score is the mean over its
windows of log((1 - p) / p), p the softmax probability of its own section
(:class:`~dgmix.scoring.detector.Detector`'s classifier path). Its thresholds come from the
training clips' own scores.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dgmix.checkpoint import load_checkpoint
from dgmix.config import RunConfig, ScoringConfig
from dgmix.methods.base import Method, TrainJob
from dgmix.methods.detector import fit_detector
from dgmix.methods.finetuned import load_encoder
from dgmix.methods.machine import MachineData
from dgmix.scoring.detector import Detector
from dgmix.training import train_baseline
from dgmix.training.finetune import MODEL_FILE, build_baseline_model


class BaselineMethod(Method):
    name = "baseline"
    summary = "official MobileNetV2 section classifier, score = mean log((1-p)/p)"

    def train(self, job: TrainJob) -> Path | None:
        out = job.out_dir / "baseline"
        mode = job.stage(out, MODEL_FILE)
        if mode is not None:
            train_baseline(job.data_root, job.machine.machine, job.cfg, out, job.cache_dir,
                           progress=job.progress, ctx=job.ctx, resume=mode == "resume")
        return out

    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        return load_encoder(model_dir, cfg, baseline=True)

    def build_detector(self, model_dir: Path | None, md: MachineData, cfg: RunConfig,
                       scoring: ScoringConfig) -> Detector:
        """The classifier detector; thresholds from the training clips' own scores."""
        model = build_baseline_model(cfg, len(md.section_names))
        model.load_state_dict(load_checkpoint(Path(model_dir) / MODEL_FILE)["model"])
        return fit_detector(self.name, md, cfg, scoring, encoder=model.encoder, classifier=model.classifier)
