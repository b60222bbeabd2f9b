"""Scoring with an exported ONNX detector on onnxruntime (``dgmix score --onnx``; extra ``[export]``).

:class:`OnnxDetector` has the scoring interface of :class:`~dgmix.scoring.bundle.DetectorBundle`
that :func:`dgmix.scoring.clips.score_clip` uses, so a clip goes through the same loading,
validation and log-mel code (:func:`~dgmix.features.clip_logmel` with the feature parameters stored
in the file) and the same section and threshold rules; only the windows -> score step runs in the
ONNX graph. Windows are cut exactly as for the bundle (:class:`~dgmix.features.WindowDataset`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dgmix.errors import InputError
from dgmix.export.writer import FORMAT
from dgmix.extras import require
from dgmix.features import FeatureParams, LogMel, WindowDataset
from dgmix.features.extract import clip_logmel_overriding

__all__ = ["OnnxDetector"]


class OnnxDetector:
    """An ONNX detector file loaded into an onnxruntime session."""

    def __init__(self, session: Any, meta: dict[str, Any], path: Path) -> None:
        self.session, self.path = session, Path(path)
        try:
            self.kind: str = meta["kind"]
            self.method: str = meta["method"]
            self.machine: str = meta["machine"]
            self.params = FeatureParams.from_dict(meta["params"])
            self.section_names: list[str] = list(meta["section_names"])
            self.bank_sections: list[str] = list(meta["bank_sections"])
            self.thresholds = np.array([math.nan if t is None else float(t) for t in meta["thresholds"]])
            self.scorer_config: dict[str, Any] | None = meta.get("scorer")
            #: "knn" or "gmm" (None for the classifier); files written before the GMM export hold a k-NN bank
            self.scorer_kind: str | None = meta.get("scorer_kind", None if self.scorer_config is None else "knn")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"ONNX detector has bad dgmix metadata: {exc}") from None
        if len(self.thresholds) != len(self.section_names):
            raise InputError(path, "ONNX detector metadata: one threshold per section expected")
        self._logmel: LogMel | None = None

    @classmethod
    def load(cls, path: Path) -> OnnxDetector:
        """Open ``path`` (written by ``dgmix export``); InputError if it is not one."""
        ort = require("onnxruntime", "export", "dgmix score --onnx")
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "file not found")
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = " ".join(str(exc).split())[:200]
            raise InputError(path, f"not a readable ONNX model ({first})") from None
        raw = session.get_modelmeta().custom_metadata_map.get("dgmix")
        try:
            meta = json.loads(raw) if raw is not None else {}
        except json.JSONDecodeError:
            meta = {}
        if meta.get("format") != FORMAT:
            raise InputError(path, "not a dgmix ONNX detector (no dgmix metadata; write one with dgmix export)")
        return cls(session, meta, path)

    # -- the scoring interface of DetectorBundle -------------------------------------------------
    def section_index(self, sections: Sequence[str], source: str = "input") -> np.ndarray:
        index = {s: i for i, s in enumerate(self.section_names)}
        missing = sorted(set(sections) - set(index))
        if missing:
            raise InputError(source, f"section(s) {missing} unknown to this detector ({self.section_names})")
        empty = sorted(set(sections) - set(self.bank_sections))
        if empty:
            held = "mixture" if self.scorer_kind == "gmm" else "bank"
            raise InputError(source, f"section(s) {empty} have no training embeddings in this detector's {held}")
        return np.array([index[s] for s in sections], dtype=np.int64)

    def features_of(self, path: Path, channel: int | None = None, pad: bool | None = None,
                    allow_silence: bool | None = None) -> np.ndarray:
        """Log-mel of one clip file with the stored feature settings (as the bundle's ``features_of``)."""
        if self._logmel is None:
            self._logmel = LogMel(self.params)
        return clip_logmel_overriding(path, self.params, self._logmel, channel, pad, allow_silence)

    def windows_of(self, features: np.ndarray) -> np.ndarray:
        """The graph's input for one clip: its windows ``(W, 1, n_mels, frames)``, or its frames
        ``(T, n_mels)`` for the ``logmel`` method."""
        if self.kind == "logmel":
            return np.ascontiguousarray(features.T, dtype=np.float32)
        ds = WindowDataset([features], frames=self.params.frames, hop=self.params.window_hop)
        return ds.batch(np.arange(len(ds))).numpy()

    def score_features(self, features: Sequence[np.ndarray], sections: Sequence[str]) -> np.ndarray:
        """Anomaly scores of clips given as log-mel arrays and their section ids (one graph run per clip)."""
        idx = self.section_index(sections)
        out = np.empty(len(features))
        for i, (f, s) in enumerate(zip(features, idx)):
            res = self.session.run(None, {"windows": self.windows_of(f), "section": np.array(s, dtype=np.int64)})
            out[i] = float(res[0][0])
        return out
