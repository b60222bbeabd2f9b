"""A saved detector: everything needed to score new clips, in one ``torch.load(weights_only=True)`` file.

The bundle holds the encoder weights (or the baseline's encoder + classifier, or nothing for the
``logmel`` method), the feature parameters, the section map, the k-NN bank as buffers of a
:class:`~dgmix.scoring.knn.KNNScorer` (or the mixture of a :class:`~dgmix.scoring.gmm.GMMScorer`
as tensors), and one decision threshold per section (a gamma fit at the
90th percentile of leave-one-out training scores, SPEC §6). Scores from a loaded bundle equal the
scores of the run that made it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dgmix.checkpoint import load_checkpoint, save_checkpoint
from dgmix.config import ModelConfig
from dgmix.errors import InputError
from dgmix.features import FeatureParams, LogMel
from dgmix.features.extract import clip_logmel_overriding
from dgmix.models import build_classifier, build_encoder
from dgmix.models.fold import fold_batchnorm
from dgmix.scoring.embed import classifier_scores, encoder_windows, logmel_frames
from dgmix.scoring.gmm import GMMScorer
from dgmix.scoring.knn import KNNScorer
from dgmix.scoring.threshold import decide

Kind = Literal["knn", "classifier", "logmel"]
FORMAT = "dgmix-detector-1"
#: Fields every bundle's ``meta`` holds (a bundle missing one is refused with one line).
_META_KEYS = ("kind", "machine", "method", "params", "section_names", "model_config", "scorer_config")


class DetectorBundle(nn.Module):
    """Encoder + k-NN bank + thresholds for one machine type."""

    def __init__(
        self,
        kind: Kind,
        machine: str,
        method: str,
        params: FeatureParams,
        section_names: Sequence[str],
        scorer: KNNScorer | GMMScorer | None = None,
        encoder: nn.Module | None = None,
        classifier: nn.Module | None = None,
        model_config: ModelConfig | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if kind == "knn" and (encoder is None or scorer is None):
            raise ValueError("a k-NN detector needs an encoder and a fitted scorer")
        if kind == "classifier" and (encoder is None or classifier is None):
            raise ValueError("a classifier detector needs an encoder and a classifier")
        if kind == "logmel" and scorer is None:
            raise ValueError("a logmel detector needs a fitted scorer")
        self.kind, self.machine, self.method = kind, machine, method
        self.params = params
        self.section_names = list(section_names)
        self.model_config = model_config if model_config is not None else ModelConfig()
        self._logmel: LogMel | None = None
        # the inference copy of the encoder (not a submodule: never saved), see inference_encoder
        object.__setattr__(self, "_inference", None)
        self.encoder = encoder
        self.classifier = classifier
        self.scorer = scorer
        t = torch.full((len(self.section_names),), float("nan"), dtype=torch.float64)
        if thresholds is not None:
            t = torch.as_tensor(list(thresholds), dtype=torch.float64)
        self.register_buffer("thresholds", t)
        #: what ``scoring.select: pseudo`` measured when it chose this detector's scoring (or None)
        self.selection: dict[str, Any] | None = None

    # -- scoring -----------------------------------------------------------------------------
    def section_index(self, sections: Sequence[str], source: str = "input") -> np.ndarray:
        index = {s: i for i, s in enumerate(self.section_names)}
        missing = sorted({s for s in sections} - set(index))
        if missing:
            raise InputError(source, f"section(s) {missing} unknown to this detector ({self.section_names})")
        return np.array([index[s] for s in sections], dtype=np.int64)

    def inference_encoder(self) -> nn.Module:
        """The encoder as scoring runs it: BatchNorm folded into the convolutions, channels-last
        (issue 11: 1.6x faster per clip on 2 CPU cores, scores equal to float rounding;
        benchmarks/bench_latency.py, BENCHMARKS.md §4). Built on first use and rebuilt when the
        weights are loaded again; the saved bundle keeps the plain encoder."""
        if self._inference is None:
            fast = fold_batchnorm(self.encoder).to(memory_format=torch.channels_last)
            object.__setattr__(self, "_inference", fast)
        return self._inference

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: ANN001
        object.__setattr__(self, "_inference", None)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def embed(self, features: Sequence[np.ndarray], device: str = "cpu") -> list[torch.Tensor]:
        """Window embeddings per clip (encoder outputs, or log-mel frames for ``logmel``)."""
        if self.kind == "logmel":
            return logmel_frames(features)
        return encoder_windows(self.inference_encoder(), features, self.params.frames, self.params.window_hop,
                               device=device)

    def score_features(
        self, features: Sequence[np.ndarray], sections: Sequence[str], device: str = "cpu"
    ) -> np.ndarray:
        """Anomaly scores of clips given as log-mel arrays and their section ids."""
        idx = self.section_index(sections)
        if self.kind == "classifier":
            return classifier_scores(self.inference_encoder(), self.classifier, features, idx,
                                     self.params.frames, self.params.window_hop, device=device)
        return self.scorer.score(self.embed(features, device), idx).double().numpy()

    def features_of(self, path: Path, channel: int | None = None, pad: bool | None = None,
                    allow_silence: bool | None = None) -> np.ndarray:
        """Log-mel features of one clip file with this detector's feature settings (the same
        function the training run's feature cache used, so the scores match the run's).
        ``channel`` / ``pad`` override the bundle's loader settings when given."""
        if self._logmel is None:
            self._logmel = LogMel(self.params)
        return clip_logmel_overriding(path, self.params, self._logmel, channel, pad, allow_silence)

    def decide(self, scores: np.ndarray, sections: Sequence[str]) -> np.ndarray:
        idx = self.section_index(sections)
        thr = self.thresholds.numpy()[idx]
        return np.array([int(decide([s], t)[0]) for s, t in zip(scores, thr)], dtype=np.int64)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        meta = {
            "format": FORMAT, "kind": self.kind, "machine": self.machine, "method": self.method,
            "params": self.params.to_dict(), "section_names": self.section_names,
            "model_config": dataclasses.asdict(self.model_config),
            "scorer_config": self.scorer.config() if self.scorer is not None else None,
            "scorer_kind": "gmm" if isinstance(self.scorer, GMMScorer) else "knn",
        }
        if self.selection is not None:
            meta["selection"] = self.selection
        return save_checkpoint(Path(path), {"meta": meta, "state": self.state_dict()})

    @classmethod
    def load(cls, path: Path) -> DetectorBundle:
        raw = load_checkpoint(Path(path))
        meta = raw.get("meta", {}) if isinstance(raw, dict) else {}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(path, "not a dgmix detector bundle")
        missing = [k for k in _META_KEYS if k not in meta] + (["state"] if "state" not in raw else [])
        if missing:
            raise InputError(path, f"detector bundle is incomplete: field(s) {', '.join(missing)} missing; "
                             "write it again with dgmix run")
        if meta["kind"] not in ("knn", "classifier", "logmel"):
            raise InputError(path, f"detector bundle has an unknown kind {meta['kind']!r}")
        state = raw["state"]
        try:
            mc = ModelConfig(**meta["model_config"])
            params = FeatureParams.from_dict(meta["params"])
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"detector bundle has bad settings: {exc}") from None
        encoder = classifier = scorer = None
        try:
            if meta["kind"] in ("knn", "classifier"):
                encoder = build_encoder(mc, params)
            if meta["kind"] == "classifier":
                classifier = build_classifier(mc, len(meta["section_names"]))
            if meta["scorer_config"] is not None:
                # bundles written before issue 14 have no scorer_kind: they hold a k-NN bank
                scorer_cls = GMMScorer if meta.get("scorer_kind", "knn") == "gmm" else KNNScorer
                scorer = scorer_cls(**meta["scorer_config"])
            bundle = cls(meta["kind"], meta["machine"], meta["method"], params,
                         meta["section_names"], scorer=scorer, encoder=encoder, classifier=classifier,
                         model_config=mc)
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"detector bundle has bad settings: {exc}") from None
        try:
            bundle.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise InputError(path, f"detector weights do not fit its settings: {str(exc).splitlines()[0]}") from None
        bundle.selection = meta.get("selection")
        return bundle.eval()
