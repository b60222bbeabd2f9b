"""Scoring with an exported ONNX detector on onnxruntime (``dgmix score --onnx``; extra ``[export]``).

:class:`OnnxDetector` has the scoring interface of :class:`~dgmix.scoring.detector.Detector` that
:func:`dgmix.scoring.clips.score_clip` uses, so a clip goes through the same loading, validation
and log-mel code (:func:`~dgmix.features.clip_logmel` with the feature settings stored in the
file) and the same section and threshold rules; the frames -> score step runs in the ONNX graph,
which is the traced detector module.
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
from dgmix.scoring.clips import ClipScoring
from dgmix.scoring.detector import DetectorInfo

__all__ = ["OnnxDetector"]


class OnnxDetector(ClipScoring):
    """An ONNX detector file loaded into an onnxruntime session."""

    def __init__(self, session: Any, meta: dict[str, Any], path: Path) -> None:
        self.session, self.path = session, Path(path)
        try:
            self.info = DetectorInfo.from_dict(meta["info"])
            self.thresholds = np.array([math.nan if t is None else float(t) for t in meta["thresholds"]])
            self._calibration = [np.asarray(c, dtype=np.float64).reshape(-1) for c in meta["calibration"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"ONNX detector has bad dgmix metadata: {exc}") from None
        if len(self.thresholds) != len(self.info.section_names) or len(self._calibration) != len(self.thresholds):
            raise InputError(path, "ONNX detector metadata: one threshold and one calibration set per section expected")

    def calibration_scores(self) -> list[np.ndarray]:
        """Each section's calibration scores (:mod:`dgmix.scoring.conformal`), from the metadata."""
        return self._calibration

    @classmethod
    def load(cls, path: Path) -> OnnxDetector:
        """Open ``path`` (written by ``dgmix export``); InputError if it is not one."""
        ort = require("onnxruntime", "export", "dgmix score --onnx")
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "is a folder, not an ONNX file" if path.is_dir() else "file not found")
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
            raise InputError(path, "not a dgmix ONNX detector of this version (write it again with dgmix export)")
        return cls(session, meta, path)

    # -- the score of Detector, on the graph ----------------------------------------------------
    def score_features(self, features: Sequence[np.ndarray], sections: Sequence[str]) -> np.ndarray:
        """Anomaly scores of clips given as log-mel arrays and their section ids (one graph run per clip)."""
        idx = self.section_index(sections)
        return np.array([float(self.session.run(None, {"frames": np.ascontiguousarray(f, dtype=np.float32),
                                                       "section": np.array(s, dtype=np.int64)})[0])
                         for f, s in zip(features, idx)])
