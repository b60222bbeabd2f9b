"""Jackknife 95 % confidence intervals for the official score.

The DCASE 2023/2024 Task 2 evaluator (nttcslab/dcase2023_task2_evaluator,
``dcase2023_task2_evaluator.py: jackknife_estimate``) follows Mesaros et al., "Sound Event
Detection in the DCASE 2017 Challenge", IEEE/ACM TASLP 27(6), 2019, §IV: leave one test clip out
at a time (N replicates), form the pseudo-values ``N·θ̂ − (N−1)·θ̂₋ᵢ``, take their mean as the
bias-corrected estimate and ``σ = sqrt(Σ(pseudo − mean)² / (N(N−1)))`` as its standard error, and
report ``t_{0.975, N−1} · σ`` as the 95 % half-width.

This module implements that recipe independently and applies it to **the official score
itself** (the harmonic mean of every section's AUC-S, AUC-T and pAUC, :func:`official_score`): each
replicate drops one test clip from its section and recomputes the whole score.
:func:`official_score_ci` gives the interval ``θ̂ ± half-width`` around the full-sample score
(the number the tables print) and keeps the jackknife estimate beside it.

Two differences from the evaluator's printed number, both deliberate (our reading of its code):

* the evaluator jackknifes the AUC and the pAUC of all clips *pooled over every machine and
  section*, and prints the mean of those two half-widths as "official score ci95", which is not
  an interval of the official score;
* its spread is computed from the leave-one-out estimates θ̂₋ᵢ with the pseudo-value normaliser
  ``1/(N(N−1))``; the pseudo-values spread (N−1) times wider, so that number is (N−1) times
  narrower than Mesaros et al.'s formula (the usual jackknife standard error,
  ``sqrt((N−1)/N · Σ(θ̂₋ᵢ − mean)²)``, which we use).

:func:`evaluator_ci95` reproduces the evaluator's number for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from dgmix.metrics.dcase import MAX_FPR, _undefined, empty_groups, hmean

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2.0 / older

__all__ = ["JackknifeCI", "SectionScores", "evaluator_ci95", "jackknife", "official_score_ci"]


@dataclass(frozen=True)
class JackknifeCI:
    """A jackknife interval: ``low``/``high`` = ``estimate`` ∓ ``half_width`` (fractions)."""

    estimate: float  # the statistic on all N items
    jackknife: float  # bias-corrected jackknife estimate (mean of the pseudo-values)
    std_error: float
    half_width: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SectionScores:
    """One section's test clips: labels (1 = anomaly), scores and domains (1 = target)."""

    y_true: np.ndarray
    y_score: np.ndarray
    is_target: np.ndarray


def jackknife(estimate: float, leave_one_out: Sequence[float] | np.ndarray,
              confidence: float = 0.95) -> JackknifeCI:
    """Jackknife interval from the full-sample ``estimate`` and the N leave-one-out values.

    Mesaros et al. 2019 §IV eqs. (3)-(7): pseudo-values ``N·θ̂ − (N−1)·θ̂₋ᵢ``, standard error
    ``sqrt(Σ(pseudo − mean)² / (N(N−1)))``, half-width ``t_{(1+c)/2, N−1} · se``.
    """
    loo = np.asarray(leave_one_out, dtype=float).ravel()
    n = loo.size
    if n < 2:
        raise ValueError("a jackknife interval needs at least 2 items")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    pseudo = n * estimate - (n - 1) * loo
    se = float(np.sqrt(np.sum((pseudo - pseudo.mean()) ** 2) / (n * (n - 1))))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * se)
    return JackknifeCI(float(estimate), float(pseudo.mean()), se, half, float(estimate) - half,
                       float(estimate) + half, n, confidence)


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr) at every distinct threshold, from (0, 0), as sklearn's roc_curve."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ys.size - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def _auc(y: np.ndarray, s: np.ndarray, max_fpr: float | None = None) -> float:
    """ROC AUC, or the McClish-standardised partial AUC up to ``max_fpr``, as
    ``sklearn.metrics.roc_auc_score`` computes them (tests/test_confidence.py checks this) but
    without its input validation: the jackknife calls it N times."""
    fpr, tpr = _roc(y, s)
    if max_fpr is None or max_fpr == 1.0:
        return float(_trapezoid(tpr, fpr))
    stop = int(np.searchsorted(fpr, max_fpr, side="right"))
    tpr_c = np.append(tpr[:stop], np.interp(max_fpr, fpr[stop - 1:stop + 1], tpr[stop - 1:stop + 1]))
    partial = float(_trapezoid(tpr_c, np.append(fpr[:stop], max_fpr)))
    min_area = 0.5 * max_fpr**2
    return float(0.5 * (1 + (partial - min_area) / (max_fpr - min_area)))


def _values(y: np.ndarray, s: np.ndarray, t: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """AUC-S, AUC-T and pAUC of one section (the rules of :func:`section_metrics`); a value whose
    test group is empty is ``None`` (n/a), as there."""
    empty = empty_groups(y, t)
    sel = {"auc_source": (t == 0) | (y == 1), "auc_target": (t == 1) | (y == 1), "pauc": slice(None)}
    return tuple(None if _undefined(k, empty) else _auc(y[g], s[g], MAX_FPR if k == "pauc" else None)
                 for k, g in sel.items())


def official_score_ci(sections: Sequence[SectionScores], confidence: float = 0.95) -> JackknifeCI:
    """Jackknife interval of the official score over all test clips of ``sections``.

    Each replicate leaves out one clip, recomputes its section's AUC-S, AUC-T and pAUC (the other
    sections are unchanged) and takes the harmonic mean of the values that exist (a section whose
    test set lacks a group has n/a values, left out of the official score as in
    :mod:`dgmix.metrics.dcase`; every replicate averages over the same values).

    Raises ``ValueError`` when no value exists, or when leaving a clip out empties a group that a
    value needs (a section with a single anomalous, source-normal or target-normal clip).
    """
    secs = [SectionScores(np.asarray(s.y_true, dtype=int), np.asarray(s.y_score, dtype=float),
                          np.asarray(s.is_target, dtype=int)) for s in sections]
    if not secs:
        raise ValueError("no sections")
    base = [_values(s.y_true, s.y_score, s.is_target) for s in secs]
    present = [[v is not None for v in b] for b in base]
    if not any(any(p) for p in present):
        raise ValueError("no AUC can be computed (every section lacks a test group)")
    full = hmean([v for b in base for v in b if v is not None])
    loo: list[float] = []
    for k, s in enumerate(secs):
        others = [v for j, b in enumerate(base) if j != k for v in b if v is not None]
        keep = np.ones(s.y_true.size, dtype=bool)
        for i in range(s.y_true.size):
            keep[i] = False
            vals = _values(s.y_true[keep], s.y_score[keep], s.is_target[keep])
            keep[i] = True
            if [v is not None for v in vals] != present[k]:
                raise ValueError(f"section {k}: leaving clip {i} out leaves an AUC undefined "
                                 "(a test group with a single clip)")
            loo.append(hmean(others + [v for v in vals if v is not None]))
    return jackknife(full, loo, confidence)


def evaluator_ci95(y_true: Sequence[int], y_score: Sequence[float]) -> float:
    """The evaluator's "official score ci95" (module docstring): the mean of the half-widths of
    the pooled AUC and pooled pAUC (max_fpr 0.1) of all clips, with its spread formula, which is
    Mesaros et al.'s half-width (:func:`jackknife`) divided by N - 1."""
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(y_score, dtype=float)
    halves = []
    for max_fpr in (None, MAX_FPR):
        loo = [roc_auc_score(np.delete(y, i), np.delete(s, i), max_fpr=max_fpr) for i in range(y.size)]
        halves.append(jackknife(0.0, loo).half_width / (y.size - 1))
    return float(np.mean(halves))
