"""Score one clip file with a saved detector: the one path ``dgmix score`` and ``dgmix serve`` share.

A *detector* here is anything with the scoring interface of :class:`~dgmix.scoring.detector.Detector`:
``machine``, ``section_names``, ``thresholds`` (one per section), ``features_of(path, channel=, pad=,
allow_silence=)``, ``section_index(sections, source)`` and ``score_features(features, sections)``.
The detector module itself and the ONNX runtime session of its export
(:class:`dgmix.export.runtime.OnnxDetector`) both have it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgmix.errors import InputError
from dgmix.scoring.threshold import decide

__all__ = ["ClipScore", "ClipScoring", "clip_section", "load_detector", "score_clip"]


class ClipScoring:
    """What the detector module and its ONNX session share around the score itself: the names
    (from ``self.info``, a :class:`~dgmix.scoring.detector.DetectorInfo`), sections, the log-mel
    of a clip file, and the decisions (from ``self.thresholds``, one per section)."""

    info: Any
    thresholds: Any
    _logmel: Any = None

    machine = property(lambda self: self.info.machine)
    method = property(lambda self: self.info.method)
    section_names = property(lambda self: self.info.section_names)
    params = property(lambda self: self.info.params)

    def section_index(self, sections: Sequence[str], source: str = "input") -> np.ndarray:
        index = {s: i for i, s in enumerate(self.section_names)}
        missing = sorted(set(sections) - set(index))
        if missing:
            raise InputError(source, f"section(s) {missing} unknown to this detector ({self.section_names})")
        return np.array([index[s] for s in sections], dtype=np.int64)

    def decide(self, scores: np.ndarray, sections: Sequence[str]) -> np.ndarray:
        """1 (anomaly) where a score is above its section's threshold, as the official baseline."""
        thr = np.asarray(self.thresholds, dtype=np.float64)[self.section_index(sections)]
        return (np.asarray(scores) > thr).astype(np.int64)

    def p_values(self, scores: Sequence[float], sections: Sequence[str]) -> np.ndarray:
        """Conformal p-values of ``scores`` against their sections' calibration scores
        (:mod:`dgmix.scoring.conformal`); NaN for a section without any."""
        from dgmix.scoring.conformal import p_values

        cal = self.calibration_scores()
        idx = self.section_index(sections)
        return np.array([p_values([s], cal[i])[0] if len(cal[i]) else math.nan
                         for s, i in zip(scores, idx)], dtype=np.float64)

    def features_of(self, path: Path, channel: int | None = None, pad: bool | None = None,
                    allow_silence: bool | None = None) -> np.ndarray:
        """Log-mel of one clip file with the detector's feature settings (the function the run's
        feature cache used); ``channel`` / ``pad`` / ``allow_silence`` override the stored ones."""
        from dgmix.features import LogMel
        from dgmix.features.extract import clip_logmel_overriding

        if self._logmel is None:  # not a submodule of the detector: never saved with it
            object.__setattr__(self, "_logmel", LogMel(self.params))
        return clip_logmel_overriding(path, self.params, self._logmel, channel, pad, allow_silence)


def load_detector(path: Path) -> Any:
    """A ``detector.pt`` (:class:`~dgmix.scoring.detector.Detector`), or an exported ``.onnx`` file
    (scored on onnxruntime, :class:`~dgmix.export.runtime.OnnxDetector`). A detector that failed
    its health check at training time is loaded with a warning on stderr."""
    import sys

    from dgmix.scoring.health import health_message

    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder; give a detector.pt or .onnx file")
    if path.suffix.lower() == ".onnx":
        from dgmix.export.runtime import OnnxDetector

        det = OnnxDetector.load(path)
    else:
        from dgmix.scoring.detector import Detector

        det = Detector.load(path)
    problem = health_message(det.info.health)
    if problem:
        print(f"warning: {path}: {problem}", file=sys.stderr)
    return det


@dataclass(frozen=True)
class ClipScore:
    """One scored clip: its section, anomaly score, threshold, decision (1 = anomaly) and p-value.

    ``threshold`` and ``decision`` are ``None`` when the detector has no finite threshold for the
    section (a detector built without thresholds), ``p_value`` when it has no calibration scores."""

    path: Path
    section: str
    score: float
    threshold: float | None
    decision: int | None
    p_value: float | None = None
    explanation: Any = None  # a dgmix.scoring.explain.Explanation when asked for


def clip_section(detector: Any, path: Path, section: str | None = None, name: str | None = None,
                 option: str = "--section") -> str:
    """The section of a clip: the one its file name carries, else ``section``, else the detector's
    only section. ``name`` is the file name to read (default: ``path``, with its folders);
    ``option`` is how the user gave ``section`` (the CLI's ``--section``, serve's ``section``
    parameter), for the messages.

    Raises InputError when none of these tells it, when ``section`` contradicts the name (the
    option is for clips whose names carry none), or when the detector does not know the section.
    """
    from dgmix.data import parse_filename

    source = name if name is not None else path
    try:
        if name is not None:
            named = parse_filename(Path(name).name, machine=detector.machine, folders=[]).section
        else:
            named = parse_filename(path, machine=detector.machine).section
    except InputError:
        named = None
    if named is not None and section is not None and f"{section}" != named:
        raise InputError(source, f"{option} {section} contradicts the section in the name ({named}); "
                                 f"{option} is only for clips whose names carry no section")
    sec = named if named is not None else section
    if sec is None and len(detector.section_names) == 1:
        sec = detector.section_names[0]
    if sec is None:
        raise InputError(source, f"cannot tell the section from the name; give {option} "
                                 f"(this detector knows {', '.join(detector.section_names)})")
    detector.section_index([sec], source=str(source))
    return sec


def score_clip(detector: Any, path: Path, section: str | None = None, *, channel: int | None = None,
               pad: bool | None = None, allow_silence: bool | None = None, name: str | None = None,
               option: str = "--section", explain: bool = False) -> ClipScore:
    """Load, featurise and score one clip file with ``detector`` (see the module docstring).

    ``channel`` / ``pad`` / ``allow_silence`` override the detector's loader settings when given; ``name`` is the
    clip's own file name when ``path`` is a temporary copy (the server's uploads). ``explain``: also
    the explanation of the score (:mod:`dgmix.scoring.explain`; a detector.pt only), from the same
    forward pass, so the score is the same number.
    Raises InputError for a clip that cannot be scored.
    """
    from dgmix.errors import undecodable_name

    path = Path(path)
    problem = undecodable_name(path) if name is None else None
    if problem is not None:
        raise InputError(path, problem)
    sec = clip_section(detector, path, section, name, option)
    feats = detector.features_of(path, channel=channel, pad=pad, allow_silence=allow_silence)
    expl = None
    if explain:
        from dgmix.scoring.explain import explain_frames

        expl = explain_frames(detector, feats, sec)
        score = expl.score
    else:
        score = float(detector.score_features([feats], [sec])[0])
    idx = int(detector.section_index([sec], source=str(name or path))[0])
    thr = float(detector.thresholds[idx])
    p = float(detector.p_values([score], [sec])[0])
    p_value = p if math.isfinite(p) else None
    if not math.isfinite(thr):
        return ClipScore(path, sec, score, None, None, p_value, expl)
    return ClipScore(path, sec, score, thr, int(decide([score], thr)[0]), p_value, expl)
