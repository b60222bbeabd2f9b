"""Fitting a detector for one machine type: training clips in, a :class:`~dgmix.scoring.detector.Detector` out.

The steps (paper §3.5 where it speaks): embed every training clip with the detector's own
``clip_vector`` (the same code that scores test clips), fit the back end on those vectors, score
each training clip with itself left out (k-NN) or in a held-out fold (densities), fit one decision
threshold per section to those scores (a gamma fit at ``threshold_percentile``, as the official
baseline, or with ``false_alarm_rate`` the split-conformal threshold of :mod:`dgmix.scoring.conformal`;
the same scores are kept in the detector as every later score's p-value reference), and check
that the detector tells its own training clips apart
(:mod:`dgmix.scoring.health`). With ``scoring.select: pseudo`` the pooling, back end and domain
handling are first chosen on the training clips (:mod:`dgmix.methods.selection`).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import torch
from torch import nn

from dgmix.config import RunConfig, ScoringConfig
from dgmix.methods.machine import MachineData
from dgmix.methods.selection import select_scoring
from dgmix.scoring import fit_gamma_threshold
from dgmix.scoring.backends import backend_settings, fit_backend, loo_scores
from dgmix.scoring.conformal import conformal_threshold, pack_calibration
from dgmix.scoring.detector import Detector, DetectorInfo, inference_encoder
from dgmix.scoring.health import check_health

__all__ = ["fit_detector", "section_thresholds"]

log = logging.getLogger("dgmix.methods")


def section_thresholds(scores: np.ndarray, sections: np.ndarray, n: int, percentile: float,
                       false_alarm_rate: float | None = None, names: list[str] | None = None) -> list[float]:
    """One decision threshold per section from that section's training scores: a gamma fit
    (``percentile``), or with ``false_alarm_rate`` the split-conformal threshold (a warning when a
    section has too few clips for the rate: its guarantee is then 1 / (n + 1))."""
    if false_alarm_rate is None:
        return [fit_gamma_threshold(scores[sections == s], percentile) for s in range(n)]
    out = []
    for s in range(n):
        fit = conformal_threshold(scores[sections == s], false_alarm_rate)
        if fit.short:
            name = names[s] if names else f"section {s:02d}"
            log.warning("%s has %d normal training clips: a false-alarm rate of %g needs at least %d; "
                        "its threshold is the largest training score, which guarantees only %.3g",
                        name, fit.n, fit.rate, math.ceil(1 / fit.rate - 1), fit.achieved)
        out.append(fit.threshold)
    return out


def fit_detector(method: str, md: MachineData, cfg: RunConfig, scoring: ScoringConfig,
                 encoder: nn.Module | None = None, classifier: nn.Module | None = None) -> Detector:
    """The fitted detector of ``method`` for ``md`` (module docstring).

    ``encoder`` None: the ``logmel`` detector (log-mel frames are the windows). ``classifier``
    given: the official baseline's score, no back end."""
    kind = "logmel" if encoder is None else "classifier" if classifier is not None else "encoder"
    info = DetectorInfo(kind, md.machine, method, list(md.section_names), cfg.features, cfg.model,
                        pooling=scoring.pooling, gwrp_r=scoring.gwrp_r, backend=scoring.backend,
                        per_domain=scoring.per_domain, false_alarm_rate=scoring.false_alarm_rate)
    enc = None if encoder is None else inference_encoder(encoder)
    clf = None if classifier is None else classifier.eval()
    det = Detector(info, enc, clf).eval()
    sec = md.sections(md.train)
    dom = np.array([1 if r.bank_domain == "target" else 0 for r in md.train], dtype=np.int64)
    with torch.inference_mode():
        if kind == "classifier":
            det.info.pooling = "mean"
            vectors = det.clip_vectors(md.train_feats)
            train_scores = det.score_features(md.train_feats, [md.section_names[s] for s in sec])
        else:
            if scoring.select == "pseudo":
                windows = None if enc is None else (lambda f: det.window_outputs(torch.from_numpy(f)))
                sel = select_scoring(md.train_feats, sec, dom, windows,
                                     candidates=scoring.select_candidates or None, seed=cfg.seed,
                                     repeats=scoring.select_repeats)
                info = dataclasses.replace(info, **sel.fields, selection=sel.to_dict())
                det.info = info
            vectors = det.clip_vectors(md.train_feats)
            det.backend = fit_backend(info.backend, info.per_domain, vectors, sec, dom, len(md.section_names),
                                      cfg.seed)
            det.info.backend_settings = backend_settings(det.backend)
            train_scores = loo_scores(det.backend, vectors, sec, dom)
    n_sec = len(md.section_names)
    det.thresholds.copy_(torch.as_tensor(section_thresholds(
        train_scores, sec, n_sec, scoring.threshold_percentile, scoring.false_alarm_rate,
        [f"{method}: {md.machine} section {n}" for n in md.section_names]),
        dtype=torch.float64))
    det.calibration = torch.from_numpy(pack_calibration([train_scores[sec == s] for s in range(n_sec)]))
    det.info.health = check_health(vectors.double().numpy(), train_scores)
    det.train_vectors = vectors  # a plain attribute, not saved: the report's t-SNE reuses it
    return det.eval()
