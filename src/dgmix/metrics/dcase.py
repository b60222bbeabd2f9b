"""DCASE 2022 Task 2 metrics, as computed by the official evaluator (SPEC §8).

The reference is the challenge's evaluator script (Kota-Dohi/dcase2022_evaluator). Per section:

* ``auc_source``: ROC AUC over the source-domain normal clips plus ALL anomalous clips of the
  section (both domains); ``auc_target`` likewise with the target-domain normals.
* ``pauc``: ``sklearn.metrics.roc_auc_score(y, score, max_fpr=0.1)`` over all clips of the section
  (sklearn returns the McClish-standardised partial AUC, as the evaluator reports).
* ``auc_all``: plain AUC over all clips (the evaluator's "AUC (all)" column).
* With binary decisions: precision, recall and F1 per domain. The evaluator computes them over the
  clips *of that domain only* (normals and anomalies whose domain flag matches); the official
  MobileNetV2 baseline's own test script instead uses the AUC groups (domain normals + all
  anomalies). ``decision_rule="evaluator"`` (default) or ``"baseline"`` picks one. Divisions are
  floored at ``sys.float_info.epsilon`` like both scripts, so an empty group gives 0, not NaN.

Aggregation (SPEC §8, paper §4 Tables 2-3): ``hmean`` floors every value at float epsilon, then takes
the harmonic mean (``scipy.stats.hmean``). A machine row holds the per-column harmonic means over
that machine's sections (AUC Source, AUC Target, pAUC) and the harmonic mean of all those values
together; the official score is the harmonic mean of every AUC-S, AUC-T and pAUC value over all
machines and sections, which is also the "Harmonic Mean" cell of the paper's "Overall" row.
Because every column has one value per section, the harmonic mean of the three column means equals
the harmonic mean of all values (checked against the paper's tables).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score

EPS = sys.float_info.epsilon
MAX_FPR = 0.1

DecisionRule = Literal["evaluator", "baseline"]

__all__ = [
    "EPS",
    "MAX_FPR",
    "SectionResult",
    "Summary",
    "hmean",
    "machine_summary",
    "official_score",
    "overall_summary",
    "section_metrics",
]


@dataclass(frozen=True)
class SectionResult:
    """Metrics of one section of one machine type. All values are fractions in [0, 1].

    The decision fields are ``None`` when no decisions were given.
    """

    auc_source: float
    auc_target: float
    pauc: float
    auc_all: float | None = None
    precision_source: float | None = None
    precision_target: float | None = None
    recall_source: float | None = None
    recall_target: float | None = None
    f1_source: float | None = None
    f1_target: float | None = None

    @property
    def hmean(self) -> float:
        """Harmonic mean of AUC-S, AUC-T and pAUC (the section's share of the official score)."""
        return hmean([self.auc_source, self.auc_target, self.pauc])

    @property
    def has_decisions(self) -> bool:
        return self.precision_source is not None

    def as_dict(self, include_none: bool = False) -> dict[str, float]:
        """The fields as a plain dict (``None`` fields left out unless ``include_none``)."""
        d = asdict(self)
        return d if include_none else {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, float]) -> SectionResult:
        """Inverse of :meth:`as_dict`; unknown keys are an error (``ValueError``)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown section metric keys {unknown}")
        missing = sorted({"auc_source", "auc_target", "pauc"} - set(d))
        if missing:
            raise ValueError(f"missing section metric keys {missing}")
        return cls(**{k: (None if v is None else float(v)) for k, v in d.items()})


@dataclass(frozen=True)
class Summary:
    """One row of a results table (a machine type, or the overall row). Fractions in [0, 1].

    ``hmean`` is the harmonic mean of all the AUC-S, AUC-T and pAUC values under the row; the
    decision fields are the harmonic means over the source and target values of all sections
    (the evaluator's "harmonic mean" row), ``None`` when some section has no decisions.
    """

    auc_source: float
    auc_target: float
    pauc: float
    hmean: float
    n_sections: int
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None


def hmean(values: Iterable[float]) -> float:
    """Harmonic mean with each value floored at ``sys.float_info.epsilon`` (SPEC §8).

    Matches ``scipy.stats.hmean(numpy.maximum(values, eps))`` as in the official evaluator.
    Raises ``ValueError`` on an empty input, NaN or a negative value.
    """
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    a = a.ravel()
    if a.size == 0:
        raise ValueError("harmonic mean of an empty list")
    if not np.all(np.isfinite(a)):
        raise ValueError("harmonic mean of a list with NaN or infinite values")
    if np.any(a < 0):
        raise ValueError("harmonic mean of a list with negative values")
    a = np.maximum(a, EPS)
    return float(a.size / np.sum(1.0 / a))


def _as_1d(x: object, name: str, dtype: type | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a.astype(dtype) if dtype is not None else a


def _binary(x: object, name: str) -> np.ndarray:
    a = _as_1d(x, name)
    if a.dtype == bool:
        return a.astype(np.int64)
    try:
        af = a.astype(float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must hold 0/1 values") from e
    if not np.all((af == 0) | (af == 1)):
        bad = a[~((af == 0) | (af == 1))][0]
        raise ValueError(f"{name} must hold 0/1 values, found {bad!r}")
    return af.astype(np.int64)


def _prf(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 as the evaluator computes them (denominators floored at eps)."""
    tp = float(np.sum((y_true == 1) & (y_pred == 1)))
    fp = float(np.sum((y_true == 0) & (y_pred == 1)))
    fn = float(np.sum((y_true == 1) & (y_pred == 0)))
    prec = tp / max(tp + fp, EPS)
    rec = tp / max(tp + fn, EPS)
    f1 = 2.0 * prec * rec / max(prec + rec, EPS)
    return prec, rec, f1


def section_metrics(
    y_true: object,
    y_score: object,
    is_target: object,
    y_pred: object | None = None,
    max_fpr: float = MAX_FPR,
    decision_rule: DecisionRule = "evaluator",
) -> SectionResult:
    """Metrics of one section (SPEC §8): AUC-S, AUC-T, pAUC, AUC(all) [+ precision/recall/F1].

    Args:
        y_true: 1 = anomalous clip, 0 = normal (bools allowed).
        y_score: anomaly scores, larger = more anomalous; must be finite.
        is_target: 1 = target-domain clip, 0 = source-domain clip.
        y_pred: optional 0/1 decisions (1 = anomaly).
        max_fpr: pAUC range (0.1 in DCASE 2020-2024).
        decision_rule: which clips enter a domain's precision/recall (module docstring).

    Raises:
        ValueError: lengths differ, non-binary labels, non-finite scores, or a group needed by an
            AUC is empty (no anomalies, no source normals or no target normals).
    """
    yt = _binary(y_true, "y_true")
    dom = _binary(is_target, "is_target")
    try:
        ys = _as_1d(y_score, "y_score").astype(float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"y_score must be numeric: {e}") from e
    n = yt.size
    if ys.size != n or dom.size != n:
        raise ValueError(
            f"length mismatch: {n} labels, {ys.size} scores, {dom.size} domain flags"
        )
    if not np.all(np.isfinite(ys)):
        raise ValueError(f"{int(np.sum(~np.isfinite(ys)))} scores are NaN or infinite")
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    n_anom = int(np.sum(yt == 1))
    n_src_norm = int(np.sum((yt == 0) & (dom == 0)))
    n_tgt_norm = int(np.sum((yt == 0) & (dom == 1)))
    empty = [
        name
        for name, count in (
            ("anomalous clips", n_anom),
            ("source-domain normal clips", n_src_norm),
            ("target-domain normal clips", n_tgt_norm),
        )
        if count == 0
    ]
    if empty:
        raise ValueError(
            f"cannot compute AUC: no {' and no '.join(empty)} among {n} clips "
            f"({n_anom} anomalous, {n_src_norm} source normal, {n_tgt_norm} target normal)"
        )
    sel_s = (dom == 0) | (yt == 1)
    sel_t = (dom == 1) | (yt == 1)
    auc_s = float(roc_auc_score(yt[sel_s], ys[sel_s]))
    auc_t = float(roc_auc_score(yt[sel_t], ys[sel_t]))
    pauc = float(roc_auc_score(yt, ys, max_fpr=max_fpr))
    auc_all = float(roc_auc_score(yt, ys))
    if y_pred is None:
        return SectionResult(auc_s, auc_t, pauc, auc_all)
    yp = _binary(y_pred, "y_pred")
    if yp.size != n:
        raise ValueError(f"length mismatch: {n} labels, {yp.size} decisions")
    if decision_rule == "evaluator":
        grp_s, grp_t = dom == 0, dom == 1
    elif decision_rule == "baseline":
        grp_s, grp_t = sel_s, sel_t
    else:
        raise ValueError(f"decision_rule must be 'evaluator' or 'baseline', got {decision_rule!r}")
    p_s, r_s, f_s = _prf(yt[grp_s], yp[grp_s])
    p_t, r_t, f_t = _prf(yt[grp_t], yp[grp_t])
    return SectionResult(auc_s, auc_t, pauc, auc_all, p_s, p_t, r_s, r_t, f_s, f_t)


def _summary(results: list[SectionResult]) -> Summary:
    if not results:
        raise ValueError("no sections to summarise")
    s = [r.auc_source for r in results]
    t = [r.auc_target for r in results]
    p = [r.pauc for r in results]
    prec = rec = f1 = None
    if all(r.has_decisions for r in results):
        prec = hmean([r.precision_source for r in results] + [r.precision_target for r in results])
        rec = hmean([r.recall_source for r in results] + [r.recall_target for r in results])
        f1 = hmean([r.f1_source for r in results] + [r.f1_target for r in results])
    return Summary(hmean(s), hmean(t), hmean(p), hmean(s + t + p), len(results), prec, rec, f1)


def machine_summary(sections: Mapping[str, SectionResult]) -> Summary:
    """A machine type's row: per-column harmonic means over its sections + overall hmean."""
    return _summary(list(sections.values()))


def overall_summary(results: Mapping[str, Mapping[str, SectionResult]]) -> Summary:
    """The "Overall" row (paper Table 2): per-column harmonic means over all sections of all
    machines; its ``hmean`` is the official score."""
    return _summary([r for secs in results.values() for r in secs.values()])


def official_score(results: Mapping[str, Mapping[str, SectionResult]]) -> float:
    """Official DCASE 2022 score: hmean of all AUC-S, all AUC-T and all pAUC values (SPEC §8)."""
    allres = [r for secs in results.values() for r in secs.values()]
    if not allres:
        raise ValueError("no sections to score")
    return hmean(
        [r.auc_source for r in allres] + [r.auc_target for r in allres] + [r.pauc for r in allres]
    )
