"""The detector: one torch module from a clip's log-mel frames and its section to an anomaly score.

:class:`Detector` holds everything scoring needs for one machine type, as submodules and buffers:
the encoder (BatchNorm folded into the convolutions, eval mode; none for the ``logmel`` detector,
whose "windows" are the log-mel frames), the classifier of the official baseline, or the back end
(:class:`~dgmix.scoring.knn.KNNBank` or :class:`~dgmix.scoring.gmm.GaussianDensity`) with each
section's training embeddings, and one decision threshold per section. Its ``forward`` is the
whole scoring path of one clip (paper §3.5):

    log-mel (n_mels, T) -> context windows (W, 1, n_mels, P) -> encoder -> (W, 320)
    -> pooling over windows (mean, the paper's; max or GWRP for logmel) -> back end -> score

or, for the baseline, the mean over windows of ``log((1 - p) / p)`` with ``p`` the softmax
probability of the clip's own section. ``dgmix run`` writes its score CSVs with this module,
``dgmix score`` and ``dgmix serve`` load and call the same module, and ``dgmix export`` is
``torch.onnx.export`` of it: there is no second implementation of a score to keep in step, so on
one machine a loaded detector reproduces the run's scores bit for bit.

Sizes that depend on the clip (the number of windows, GWRP ranks) come from tensor shapes inside
the module, never from Python numbers, so one exported graph serves every clip length.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dgmix.checkpoint import load_checkpoint, save_checkpoint
from dgmix.config import ModelConfig
from dgmix.errors import InputError
from dgmix.features import FeatureParams
from dgmix.models import build_baseline_classifier, build_baseline_encoder, build_encoder
from dgmix.models.fold import fold_batchnorm
from dgmix.scoring.clips import ClipScoring
from dgmix.scoring.gmm import GaussianDensity
from dgmix.scoring.knn import KNNBank
from dgmix.scoring.pooling import pool

__all__ = ["FORMAT", "Detector", "DetectorInfo", "inference_encoder"]

FORMAT = "dgmix-detector-4"
EPS = float(np.finfo(np.float32).eps)


@dataclass
class DetectorInfo:
    """What a detector is, as plain values (saved beside its weights in ``detector.pt``).

    ``kind``: ``"encoder"`` (encoder + back end), ``"logmel"`` (frames + back end) or
    ``"classifier"`` (the official baseline's score). ``backend``: the back end's name
    (:func:`dgmix.scoring.backends.parse_backend`), ``per_domain`` its domain handling.
    ``selection``: what the label-free choice measured (or None); ``health``: the check that the
    detector tells its own training clips apart (:func:`dgmix.scoring.health.check_health`).
    ``false_alarm_rate``: the rate the thresholds were set for (:mod:`dgmix.scoring.conformal`),
    or None for the official baseline's gamma rule."""

    kind: str
    machine: str
    method: str
    section_names: list[str]
    params: FeatureParams
    model: ModelConfig = field(default_factory=ModelConfig)
    pooling: str = "mean"
    gwrp_r: float = 0.9
    backend: str = "1nn"
    per_domain: bool = False
    backend_settings: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    false_alarm_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["params"], d["model"] = self.params.to_dict(), dataclasses.asdict(self.model)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorInfo:
        d = dict(d)
        d["params"] = FeatureParams.from_dict(d["params"])
        d["model"] = ModelConfig(**d["model"])
        return cls(**d)


def inference_encoder(encoder: nn.Module) -> nn.Module:
    """The encoder as a detector runs it: eval mode, BatchNorm folded into the convolutions and
    channels-last weights (faster on CPU; the same function up to float rounding)."""
    return fold_batchnorm(encoder).to(memory_format=torch.channels_last).eval()


class Detector(ClipScoring, nn.Module):
    """Log-mel frames + section -> anomaly score, for one machine type (module docstring)."""

    thresholds: Tensor
    calibration: Tensor

    def __init__(self, info: DetectorInfo, encoder: nn.Module | None = None, classifier: nn.Module | None = None,
                 backend: nn.Module | None = None) -> None:
        super().__init__()
        if info.kind not in ("encoder", "logmel", "classifier"):
            raise ValueError(f"unknown detector kind {info.kind!r}")
        if (info.kind == "logmel") != (encoder is None) or (info.kind == "classifier") != (classifier is not None):
            raise ValueError(f"a {info.kind} detector got the wrong parts")
        if info.kind == "classifier" and backend is not None:
            raise ValueError("the classifier detector has no back end")
        self.info = info
        self.encoder, self.classifier, self.backend = encoder, classifier, backend
        self.register_buffer("thresholds", torch.full((len(info.section_names),), math.nan, dtype=torch.float64))
        # each section's out-of-fold normal training scores, sorted, NaN-padded: the p-values' reference
        self.register_buffer("calibration", torch.full((len(info.section_names), 1), math.nan, dtype=torch.float64))

    # -- the scoring path --------------------------------------------------------------------
    def windows(self, frames: Tensor) -> Tensor:
        """Context windows ``(W, 1, n_mels, P)`` of one clip's log-mel ``(n_mels, T)`` (paper §3.1)."""
        p, hop = self.info.params.frames, self.info.params.window_hop
        n = (frames.shape[1] - p) // hop + 1
        idx = torch.arange(n)[:, None] * hop + torch.arange(p)[None, :]
        return frames[:, idx].permute(1, 0, 2).unsqueeze(1)

    def window_outputs(self, frames: Tensor) -> Tensor:
        """``(W, D)``: encoder outputs of the clip's windows, or its frames ``(T, n_mels)`` (logmel),
        or the classifier's logits (baseline)."""
        if self.encoder is None:
            return frames.transpose(0, 1)
        out = self.encoder(self.windows(frames).contiguous(memory_format=torch.channels_last))
        return out if self.classifier is None else self.classifier(out)

    def clip_vector(self, frames: Tensor) -> Tensor:
        """The clip embedding ``(D,)``: window outputs pooled over time (paper §3.5: the mean)."""
        return pool(self.window_outputs(frames), self.info.pooling, self.info.gwrp_r)

    def forward(self, frames: Tensor, section: Tensor) -> Tensor:
        """Anomaly score (0-d float64) of one clip: log-mel ``(n_mels, T)`` float32, 0-d int64 section."""
        if self.classifier is not None:
            logits = self.window_outputs(frames).double()
            p = torch.softmax(logits, dim=1).index_select(1, section.reshape(1)).clamp(EPS, 1 - EPS)
            return torch.log((1 - p) / p).mean()
        if self.backend is None:
            raise RuntimeError("the detector has no fitted back end")
        return self.backend(self.clip_vector(frames)[None], section)[0].double()

    # -- batches of clips (Python side) ------------------------------------------------------
    @torch.inference_mode()
    def score_features(self, features: Sequence[np.ndarray], sections: Sequence[str]) -> np.ndarray:
        """Scores of clips given as log-mel arrays ``(n_mels, T)`` and their section names: one
        ``forward`` per clip, so a clip's score never depends on the clips scored with it."""
        idx = self.section_index(sections)
        return np.array([float(self(torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)),
                                    torch.tensor(int(s)))) for f, s in zip(features, idx)], dtype=np.float64)

    @torch.inference_mode()
    def clip_vectors(self, features: Sequence[np.ndarray]) -> Tensor:
        """Clip embeddings ``(C, D)`` of log-mel arrays, as :meth:`forward` computes them."""
        return torch.stack([self.clip_vector(torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)))
                            for f in features])

    def calibration_scores(self) -> list[np.ndarray]:
        """Each section's calibration scores (:mod:`dgmix.scoring.conformal`)."""
        from dgmix.scoring.conformal import unpack_calibration

        return unpack_calibration(self.calibration.numpy())

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write ``{"meta", "state"}`` (loads with ``torch.load(weights_only=True)``)."""
        meta = {"format": FORMAT, **self.info.to_dict()}
        return save_checkpoint(Path(path), {"meta": meta, "state": self.state_dict()})

    @classmethod
    def load(cls, path: Path) -> Detector:
        """A detector written by :meth:`save`; anything else is an InputError naming the file."""
        raw = load_checkpoint(Path(path))
        meta = raw.get("meta") if isinstance(raw, dict) else None
        if not isinstance(meta, dict) or "state" not in raw:
            raise InputError(path, "not a dgmix detector (no detector metadata)")
        if meta.get("format") != FORMAT:
            raise InputError(path, f"a detector of another dgmix format ({meta.get('format')!r}, this version "
                             f"reads {FORMAT!r}); write it again with dgmix run")
        try:
            info = DetectorInfo.from_dict({k: v for k, v in meta.items() if k != "format"})
            det = cls.build(info)
            _resize_buffers(det, raw["state"])
            det.load_state_dict(raw["state"])
        except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as exc:
            raise InputError(path, f"detector file does not fit its settings: {str(exc).splitlines()[0]}") from None
        return det.eval()

    @classmethod
    def build(cls, info: DetectorInfo) -> Detector:
        """An unfitted detector of the shape ``info`` describes (weights and buffers to be loaded)."""
        from dgmix.scoring.backends import make_backend

        encoder = classifier = backend = None
        if info.kind == "encoder":
            encoder = inference_encoder(build_encoder(info.model, info.params))
        if info.kind == "classifier":  # the official baseline's network and dense layer
            encoder = inference_encoder(build_baseline_encoder(info.model, info.params))
            classifier = build_baseline_classifier(info.model, len(info.section_names)).eval()
        else:
            backend = make_backend(info.backend, info.per_domain, **info.backend_settings)
        return cls(info, encoder, classifier, backend)


def _resize_buffers(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Give the back end's buffers and the calibration scores the shapes of the fit they were
    saved from (they are sized by it)."""
    if "calibration" in state:
        module._buffers["calibration"] = torch.empty_like(state["calibration"])
    for name, sub in module.named_modules():
        if isinstance(sub, (KNNBank, GaussianDensity)):
            for b, buf in list(sub._buffers.items()):
                key = f"{name}.{b}"
                if buf is not None and key in state:
                    sub._buffers[b] = torch.empty_like(state[key])
