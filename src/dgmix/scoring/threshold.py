"""Decision threshold from training scores (as the official DCASE 2022 baselines).

The official MobileNetV2 baseline fits a gamma distribution to the anomaly scores of the training
clips with ``scipy.stats.gamma.fit(scores)`` (shape, loc and scale all free: no ``floc``) and takes
``scipy.stats.gamma.ppf(0.9, shape, loc, scale)`` as the threshold; a clip is anomalous when its
score is strictly greater. With the k-NN score a training clip's distance to itself is 0, so the
scores to fit are leave-one-out scores (:meth:`dgmix.scoring.knn.KNNBank.loo_scores`; for the
densities, cross-fitted ones).

Robustness (our additions, not in the baseline): one score or all-equal scores return that value
(a gamma fit is undefined there); if the fit fails, gives a non-finite threshold, or does not
describe the scores at all, the empirical ``percentile`` quantile of the scores (``numpy.quantile``)
is returned instead and ``fallback_used`` in :func:`fit_gamma_threshold_info` reports it. "Does not
describe them": the Kolmogorov-Smirnov distance between the fitted and the empirical distribution
is above :data:`KS_LIMIT` / sqrt(n), the 1 % critical value of the KS test (conservative here, as
the parameters were fitted to the same scores). With ``loc`` free the maximum-likelihood fit can
degenerate to a shape near 0 with ``loc`` just under the smallest score: on the DCASE 2023 valve
clips the ``logmel`` detector's density scores (negative log-likelihoods near 300) got shape 0.11
and a 90th percentile below 33 of its 34 training scores, so that every normal test clip raised
an alarm; the check turns such a fit into the empirical quantile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats

__all__ = ["KS_LIMIT", "ThresholdFit", "decide", "fit_gamma_threshold", "fit_gamma_threshold_info"]

#: a gamma fit whose Kolmogorov-Smirnov distance to the scores exceeds KS_LIMIT / sqrt(n) is not
#: used (the asymptotic 1 % critical value of the KS test)
KS_LIMIT = 1.63


@dataclass(frozen=True)
class ThresholdFit:
    """Result of a threshold fit: the threshold, the gamma parameters (``None`` when not fitted)
    and how it was obtained: ``"gamma"``, ``"constant"`` or ``"quantile"`` (fallback)."""

    threshold: float
    shape: float | None
    loc: float | None
    scale: float | None
    method: str

    @property
    def fallback_used(self) -> bool:
        return self.method == "quantile"


def _scores(scores: object, allow_empty: bool = False) -> np.ndarray:
    try:
        a = np.asarray(scores, dtype=float).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scores must be numbers: {e}") from e
    if a.size == 0 and not allow_empty:
        raise ValueError("cannot fit a threshold to an empty list of scores")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{int(np.sum(~np.isfinite(a)))} scores are NaN or infinite")
    return a


def _ks_distance(a: np.ndarray, shape: float, loc: float, scale: float) -> float:
    """The Kolmogorov-Smirnov distance between the gamma ``(shape, loc, scale)`` and the scores ``a``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = scipy.stats.kstest(a, "gamma", args=(shape, loc, scale)).statistic
    return float(d) if np.isfinite(d) else np.inf


def fit_gamma_threshold_info(scores: object, percentile: float = 0.9) -> ThresholdFit:
    """Like :func:`fit_gamma_threshold` but returns the fitted parameters too."""
    if not 0.0 < percentile < 1.0:
        raise ValueError(f"percentile must be in (0, 1), got {percentile}")
    a = _scores(scores)
    if a.size == 1 or np.all(a == a[0]):
        return ThresholdFit(float(a[0]), None, None, None, "constant")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            shape, loc, scale = scipy.stats.gamma.fit(a)
            thr = float(scipy.stats.gamma.ppf(percentile, shape, loc=loc, scale=scale))
        except (ValueError, RuntimeError, FloatingPointError, OverflowError):
            shape = loc = scale = None
            thr = float("nan")
    if not np.isfinite(thr) or _ks_distance(a, shape, loc, scale) > KS_LIMIT / np.sqrt(a.size):
        return ThresholdFit(float(np.quantile(a, percentile)), None, None, None, "quantile")
    return ThresholdFit(thr, float(shape), float(loc), float(scale), "gamma")


def fit_gamma_threshold(scores: object, percentile: float = 0.9) -> float:
    """Threshold = ``percentile`` quantile of a gamma fit to training scores (module docstring)."""
    return fit_gamma_threshold_info(scores, percentile).threshold


def decide(scores: object, threshold: float) -> np.ndarray:
    """Decisions as in the official baseline: 1 (anomaly) where ``score > threshold``, else 0."""
    a = _scores(scores, allow_empty=True)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return (a > threshold).astype(np.int64)
