"""Alarms set by a false-alarm rate: split-conformal thresholds and p-values from normal training clips.

Not in the paper (its decisions are the DCASE baseline's: the 90th percentile of a gamma fit to
training scores, :mod:`dgmix.scoring.threshold`). Here the *calibration scores* of a section are
the out-of-fold scores of its normal training clips: for the k-NN back ends each clip scored
against the section's bank with itself left out, for the densities a model fitted on the other
folds (:func:`dgmix.scoring.backends.loo_scores`). With ``n`` calibration scores
``s_(1) <= ... <= s_(n)``:

* **threshold** for a false-alarm rate ``A``: ``s_(k)`` with ``k = ceil((n + 1)(1 - A))``; a clip
  is an alarm when its score is strictly above it;
* **p-value** of a score ``s``: ``(1 + #{i : s_i >= s}) / (n + 1)``, the share of normal clips
  (the new one counted) that score at least as high. A clip is an alarm at rate ``A`` exactly
  when its p-value is at most ``A`` (ties aside).

What it guarantees: if a new normal clip and the ``n`` calibration clips are *exchangeable*
(drawn the same way from one distribution, in no particular order), then
``P(score > threshold) <= A`` over the draw of all ``n + 1`` (Vovk et al. 2005; Lei et al.
2018, split conformal prediction), and a p-value is *valid*: ``P(p <= A) <= A``. The bound is
marginal (an average over calibration sets, not a promise for this one) and tight to within
``1 / (n + 1)``.

What it assumes, and where that fails (docs/results.md measures it):

* *one distribution*: the calibration clips of a DCASE section are mostly source-domain clips
  (990 source and 10 target). A target-domain normal clip comes from another distribution and is
  not covered: its false-alarm rate can be far above ``A``. The remedy is more normal clips of
  the domain a machine runs in, added to its training data (the rule needs ``n >= 1/A - 1``);
* *out of fold*: a learned encoder was trained on the very clips that calibrate it, so their
  scores are optimistic beside a new clip's and alarms come more often than ``A``; only the back
  end is fitted out of fold. The ``logmel`` detector learns nothing from its clips but its
  back end (and the label-free choice of its pooling), so it comes closest to the assumption;
  the official baseline's scores are in-sample altogether;
* *enough clips*: with ``n < 1/A - 1`` no threshold among the scores achieves ``A``; the
  largest score is used, whose guarantee is ``1 / (n + 1)``, and :func:`conformal_threshold`
  says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ConformalThreshold", "conformal_threshold", "p_values", "pack_calibration", "unpack_calibration"]


@dataclass(frozen=True)
class ConformalThreshold:
    """A section's threshold for rate ``rate`` from ``n`` calibration scores; ``achieved`` is the
    guaranteed bound (``rate``, or ``1 / (n + 1)`` when ``n`` is too small for ``rate``)."""

    threshold: float
    rate: float
    n: int
    achieved: float

    @property
    def short(self) -> bool:
        """Too few calibration clips for the rate asked."""
        return self.achieved > self.rate


def _finite(scores: object, what: str = "calibration scores") -> np.ndarray:
    a = np.asarray(scores, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"no {what}")
    if not np.isfinite(a).all():
        raise ValueError(f"{int((~np.isfinite(a)).sum())} {what} are NaN or infinite")
    return a


def check_rate(rate: float) -> float:
    """``rate`` as a float in (0, 1); ValueError otherwise."""
    r = float(rate)
    if not 0.0 < r < 1.0:
        raise ValueError(f"false-alarm rate must be in (0, 1), got {rate}")
    return r


def conformal_threshold(calibration: object, rate: float) -> ConformalThreshold:
    """The split-conformal threshold for false-alarm rate ``rate`` (module docstring)."""
    a = np.sort(_finite(calibration))
    r, n = check_rate(rate), a.size
    k = math.ceil((n + 1) * (1.0 - r) - 1e-12)  # the 1e-12 keeps (n+1)(1-r) = integer from rounding up
    if k > n:
        return ConformalThreshold(float(a[-1]), r, n, 1.0 / (n + 1))
    return ConformalThreshold(float(a[k - 1]), r, n, r)


def p_values(scores: object, calibration: object) -> np.ndarray:
    """Conformal p-values ``(1 + #{s_i >= s}) / (n + 1)`` of ``scores`` against ``calibration``."""
    cal = np.sort(_finite(calibration))
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    at_least = cal.size - np.searchsorted(cal, s, side="left")  # calibration scores >= s
    p = (1.0 + at_least) / (cal.size + 1.0)
    return np.where(np.isnan(s), np.nan, p)


def pack_calibration(per_section: Sequence[np.ndarray]) -> np.ndarray:
    """Sections' calibration scores as one ``(S, N)`` float64 array, sorted, NaN-padded (a buffer)."""
    n = max((len(c) for c in per_section), default=0)
    out = np.full((len(per_section), max(n, 1)), np.nan)
    for i, c in enumerate(per_section):
        out[i, : len(c)] = np.sort(np.asarray(c, dtype=np.float64))
    return out


def unpack_calibration(packed: np.ndarray) -> list[np.ndarray]:
    """The inverse of :func:`pack_calibration`: one array of scores per section (may be empty)."""
    return [row[~np.isnan(row)] for row in np.asarray(packed, dtype=np.float64).reshape(len(packed), -1)]
