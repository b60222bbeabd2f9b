"""Does a detector tell its own training clips apart? A check run before a detector is saved.

A learned encoder whose BatchNorm statistics have not converged, or that has collapsed, maps every
clip to nearly the same point: its scores then carry rounding noise, not information, and any
decision at the threshold is an accident. The paper has no such check (it trains to convergence);
it is ours. Two measures, both on the normal training clips:

* ``embedding_spread``: median over clips of ``|v_i − v̄| / |v̄|``, the clip embeddings' distance
  from their mean relative to the mean's norm (for the classifier: its window logits pooled);
* ``score_spread``: ``(q90 − q10) / |q50|`` of the training scores behind the threshold
  (leave-one-out or cross-fitted), how much the scores differ relative to their size.

A detector fails when either is below :data:`MIN_SPREAD` (1e-3). Healthy detectors measured on the
default synthetic set and the valve clips sit at 10⁻² and above on both (docs/results.md); the
``cpu`` preset's encoders before BatchNorm re-estimation sat at 10⁻⁶-10⁻⁴.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MIN_SPREAD", "check_health", "health_message"]

MIN_SPREAD = 1e-3


def check_health(vectors: np.ndarray, train_scores: np.ndarray) -> dict[str, Any]:
    """``{"ok", "embedding_spread", "score_spread", "reason"}`` (module docstring)."""
    v = np.asarray(vectors, dtype=np.float64)
    center = v.mean(axis=0)
    ref = np.linalg.norm(center) or float(np.median(np.linalg.norm(v, axis=1))) or 1.0
    emb = float(np.median(np.linalg.norm(v - center, axis=1)) / ref)
    q10, q50, q90 = np.quantile(np.asarray(train_scores, dtype=np.float64), [0.1, 0.5, 0.9])
    spread = float((q90 - q10) / max(abs(q50), 1e-12))
    reasons = []
    if emb < MIN_SPREAD:
        reasons.append(f"training clip embeddings differ by {emb:.1e} of their norm")
    if spread < MIN_SPREAD:
        reasons.append(f"training scores differ by {spread:.1e} of their size")
    return {"ok": not reasons, "embedding_spread": emb, "score_spread": spread, "reason": "; ".join(reasons)}


def health_message(health: dict[str, Any] | None) -> str | None:
    """One line for a detector that failed the check (None for a healthy one)."""
    if not health or health.get("ok", True):
        return None
    return (f"degenerate detector: {health['reason']} (minimum {MIN_SPREAD:g}); its scores do not tell "
            "normal clips apart")
