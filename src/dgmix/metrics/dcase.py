"""DCASE 2022 Task 2 metrics, as computed by the official evaluator.

The reference is the challenge's evaluator script (Kota-Dohi/dcase2022_evaluator). Per section:

* ``auc_source``: ROC AUC over the source-domain normal clips plus ALL anomalous clips of the
  section (both domains); ``auc_target`` likewise with the target-domain normals.
* ``pauc``: ``sklearn.metrics.roc_auc_score(y, score, max_fpr=0.1)`` over all clips of the section
  (sklearn returns the McClish-standardised partial AUC, as the evaluator reports).
* ``auc_all``: plain AUC over all clips (the evaluator's "AUC (all)" column).
* With binary decisions: precision, recall and F1 per domain. The evaluator computes them over the
  clips *of that domain only* (normals and anomalies whose domain flag matches), and so do we
  (the official MobileNetV2 baseline's own test script instead uses the AUC groups, domain
  normals + all anomalies; no score of ours is computed that way). Divisions are
  floored at ``sys.float_info.epsilon`` like both scripts, so a group without anomalies gives 0,
  not NaN; a domain with no clip at all (an incomplete test set, below) gives ``None``.

Incomplete test sets (not covered by the evaluator, which needs every group): a section
whose test set lacks a group still gets every metric that can be computed, the others are ``None``
(printed "n/a"). AUC-S needs source-domain normal and anomalous clips, AUC-T target-domain normal
and anomalous clips, pAUC and AUC(all) normal and anomalous clips. :attr:`SectionResult.empty_groups`
names the missing groups. Every harmonic mean (a section's, a machine row's, the official score)
is then taken over the values that exist; :func:`official_values` lists which ones those are.

Aggregation (paper §4, Tables 2-3): ``hmean`` floors every value at float epsilon, then takes
the harmonic mean (``scipy.stats.hmean``). A machine row holds the per-column harmonic means over
that machine's sections (AUC Source, AUC Target, pAUC) and the harmonic mean of all those values
together; the official score is the harmonic mean of every AUC-S, AUC-T and pAUC value over all
machines and sections, which is also the "Harmonic Mean" cell of the paper's "Overall" row.
Because every column has one value per section, the harmonic mean of the three column means equals
the harmonic mean of all values (checked against the paper's tables); with missing values the row's
harmonic mean is still the one over all its values.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
from sklearn.metrics import roc_auc_score

EPS = sys.float_info.epsilon
MAX_FPR = 0.1


__all__ = ["EPS", "GROUPS", "MAX_FPR", "OFFICIAL_KEYS", "SectionResult", "Summary", "empty_groups", "hmean",
           "machine_summary", "missing_note", "official_score", "official_values", "overall_summary", "section_metrics"]

#: The per-section values the official score averages over.
OFFICIAL_KEYS = ("auc_source", "auc_target", "pauc")
_LABELS = {"auc_source": "AUC-S", "auc_target": "AUC-T", "pauc": "pAUC"}
#: The test groups of a section, in the order :func:`empty_groups` reports them.
GROUPS = ("anomalous", "source-domain normal", "target-domain normal")
#: Besides the anomalous clips, each value needs a normal group of these (pAUC: of either domain).
_NEEDS = {"auc_source": ("source-domain normal",), "auc_target": ("target-domain normal",),
          "pauc": ("source-domain normal", "target-domain normal")}


@dataclass(frozen=True)
class SectionResult:
    """Metrics of one section of one machine type. All values are fractions in [0, 1].

    AUC-S, AUC-T, pAUC and AUC(all) are ``None`` when the test set lacks a group they need
    (``empty_groups``, module docstring); the decision fields are ``None`` when no decisions were
    given.
    """

    auc_source: float | None
    auc_target: float | None
    pauc: float | None
    auc_all: float | None = None
    precision_source: float | None = None
    precision_target: float | None = None
    recall_source: float | None = None
    recall_target: float | None = None
    f1_source: float | None = None
    f1_target: float | None = None
    empty_groups: tuple[str, ...] = ()

    @property
    def values(self) -> dict[str, float]:
        """The official values that exist: ``{key: value}`` for the keys of :data:`OFFICIAL_KEYS`."""
        return {k: v for k in OFFICIAL_KEYS if (v := getattr(self, k)) is not None}

    @property
    def missing(self) -> tuple[str, ...]:
        """The official values that could not be computed (keys of :data:`OFFICIAL_KEYS`)."""
        return tuple(k for k in OFFICIAL_KEYS if getattr(self, k) is None)

    @property
    def hmean(self) -> float | None:
        """Harmonic mean of AUC-S, AUC-T and pAUC that exist (the section's share of the official
        score); ``None`` when none does."""
        return _hmean_or_none(list(self.values.values()))

    @property
    def has_decisions(self) -> bool:
        return self.precision_source is not None or self.precision_target is not None

    def as_dict(self) -> dict:
        """The fields as a plain dict. ``None`` fields are left out, except AUC-S, AUC-T and pAUC,
        which are always present (``None`` = n/a); ``empty_groups`` is a list, present when not empty."""
        d = {**asdict(self), "empty_groups": list(self.empty_groups)}
        return {k: v for k, v in d.items() if k in OFFICIAL_KEYS or (v is not None and v != [])}

    @classmethod
    def from_dict(cls, d: Mapping) -> SectionResult:
        """Inverse of :meth:`as_dict`; unknown keys are an error (``ValueError``)."""
        if unknown := sorted(set(d) - {f.name for f in fields(cls)}):
            raise ValueError(f"unknown section metric keys {unknown}")
        if missing := sorted(set(OFFICIAL_KEYS) - set(d)):
            raise ValueError(f"missing section metric keys {missing}")
        groups = d.get("empty_groups") or ()
        if isinstance(groups, str) or not all(g in GROUPS for g in groups):
            raise ValueError(f"empty_groups must be a list of {list(GROUPS)}, got {groups!r}")
        vals = {k: (None if v is None else float(v)) for k, v in d.items() if k != "empty_groups"}
        return cls(**vals, empty_groups=tuple(groups))


@dataclass(frozen=True)
class Summary:
    """One row of a results table (a machine type, or the overall row). Fractions in [0, 1].

    ``hmean`` is the harmonic mean of all the AUC-S, AUC-T and pAUC values under the row that
    exist; a column is ``None`` when no section has a value for it, ``hmean`` when no value exists
    at all. ``n_values`` of ``3 * n_sections`` values exist. The decision fields are the harmonic
    means over the source and target values of all sections (the evaluator's "harmonic mean"
    row), ``None`` when some section has no decisions.
    """

    auc_source: float | None
    auc_target: float | None
    pauc: float | None
    hmean: float | None
    n_sections: int
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    n_values: int | None = None


def hmean(values: Iterable[float]) -> float:
    """Harmonic mean with each value floored at ``sys.float_info.epsilon``.

    Matches ``scipy.stats.hmean(numpy.maximum(values, eps))`` as in the official evaluator.
    Raises ``ValueError`` on an empty input, NaN or a negative value.
    """
    a = np.asarray(list(values), dtype=float).ravel()
    if a.size == 0:
        raise ValueError("harmonic mean of an empty list")
    if not np.all(np.isfinite(a)):
        raise ValueError("harmonic mean of a list with NaN or infinite values")
    if np.any(a < 0):
        raise ValueError("harmonic mean of a list with negative values")
    return float(a.size / np.sum(1.0 / np.maximum(a, EPS)))


def _binary(x: object, name: str) -> np.ndarray:
    """``x`` as a 1-D int64 array of 0/1 values (bools allowed); ``ValueError`` otherwise."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    try:
        af = a.astype(float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must hold 0/1 values") from e
    bad = (af != 0) & (af != 1)
    if bad.any():
        raise ValueError(f"{name} must hold 0/1 values, found {a[bad][0]!r}")
    return af.astype(np.int64)


def _prf(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 as the evaluator computes them (denominators floored at eps)."""
    tp = float(np.sum((y_true == 1) & (y_pred == 1)))
    fp = float(np.sum((y_true == 0) & (y_pred == 1)))
    fn = float(np.sum((y_true == 1) & (y_pred == 0)))
    prec, rec = tp / max(tp + fp, EPS), tp / max(tp + fn, EPS)
    return prec, rec, 2.0 * prec * rec / max(prec + rec, EPS)


def section_metrics(y_true: object, y_score: object, is_target: object, y_pred: object | None = None) -> SectionResult:
    """Metrics of one section: AUC-S, AUC-T, pAUC, AUC(all) [+ precision/recall/F1].

    Args:
        y_true: 1 = anomalous clip, 0 = normal (bools allowed).
        y_score: anomaly scores, larger = more anomalous; must be finite.
        is_target: 1 = target-domain clip, 0 = source-domain clip.
        y_pred: optional 0/1 decisions (1 = anomaly).

    pAUC is over false-positive rates up to :data:`MAX_FPR` (0.1 in DCASE 2020-2024). A value whose
    groups are empty (no anomalous, no source-domain normal or no target-domain normal clip) is
    ``None`` and the empty groups are listed in ``empty_groups`` (module docstring).

    Raises:
        ValueError: lengths differ, non-binary labels, non-finite scores.
    """
    yt = _binary(y_true, "y_true")
    dom = _binary(is_target, "is_target")
    try:
        ys = np.asarray(y_score, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"y_score must be numeric: {e}") from e
    if ys.ndim != 1:
        raise ValueError(f"y_score must be one-dimensional, got shape {ys.shape}")
    n = yt.size
    if ys.size != n or dom.size != n:
        raise ValueError(f"length mismatch: {n} labels, {ys.size} scores, {dom.size} domain flags")
    if not np.all(np.isfinite(ys)):
        raise ValueError(f"{int(np.sum(~np.isfinite(ys)))} scores are NaN or infinite")
    empty = empty_groups(yt, dom)

    def auc(key: str, sel: np.ndarray | slice, **kw) -> float | None:
        return None if _undefined(key, empty) else float(roc_auc_score(yt[sel], ys[sel], **kw))

    values = (auc("auc_source", (dom == 0) | (yt == 1)), auc("auc_target", (dom == 1) | (yt == 1)),
              auc("pauc", slice(None), max_fpr=MAX_FPR), auc("pauc", slice(None)))
    if y_pred is None:
        return SectionResult(*values, empty_groups=empty)
    yp = _binary(y_pred, "y_pred")
    if yp.size != n:
        raise ValueError(f"length mismatch: {n} labels, {yp.size} decisions")
    (p_s, r_s, f_s), (p_t, r_t, f_t) = (_prf(yt[g], yp[g]) if g.any() else (None, None, None)
                                        for g in (dom == 0, dom == 1))
    return SectionResult(*values, p_s, p_t, r_s, r_t, f_s, f_t, empty)


def empty_groups(y_true: object, is_target: object) -> tuple[str, ...]:
    """The groups of :data:`GROUPS` with no clip in a section's test set (1 = anomaly / target)."""
    yt = _binary(y_true, "y_true")
    dom = _binary(is_target, "is_target")
    present = (yt == 1).any(), ((yt == 0) & (dom == 0)).any(), ((yt == 0) & (dom == 1)).any()  # as in GROUPS
    return tuple(g for g, p in zip(GROUPS, present) if not p)


def _undefined(key: str, empty: tuple[str, ...]) -> bool:
    return "anomalous" in empty or all(g in empty for g in _NEEDS[key])


def missing_note(machine: str, section: str, empty: tuple[str, ...], unknown_domain: bool = False) -> str | None:
    """The one-line warning for a section whose test set lacks groups, or ``None`` if it has all:
    ``"ToyTrain section 00: no source-domain normal test clips; AUC-S n/a"``."""
    if not empty:
        return None
    missing = [_LABELS[k] for k in OFFICIAL_KEYS if _undefined(k, empty)]
    why = " (no domains in this layout: its clips count as source)" if unknown_domain else ""
    return (f"{machine} section {section}: no {' and no '.join(empty)} test clips{why}; "
            f"{', '.join(missing)} n/a, left out of the official score")


def _hmean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return hmean(vals) if vals else None


def _summary(results: list[SectionResult]) -> Summary:
    if not results:
        raise ValueError("no sections to summarise")
    cols = [[getattr(r, k) for r in results] for k in OFFICIAL_KEYS]  # AUC-S, AUC-T, pAUC
    prec, rec, f1 = ([_hmean_or_none([getattr(r, f"{k}_{d}") for r in results for d in ("source", "target")])
                      for k in ("precision", "recall", "f1")]
                     if all(r.has_decisions for r in results) else (None, None, None))
    n_values = sum(len(r.values) for r in results)
    return Summary(*map(_hmean_or_none, cols), _hmean_or_none(sum(cols, [])), len(results), prec, rec, f1, n_values)


def machine_summary(sections: Mapping[str, SectionResult]) -> Summary:
    """A machine type's row: per-column harmonic means over its sections + overall hmean."""
    return _summary(list(sections.values()))


def overall_summary(results: Mapping[str, Mapping[str, SectionResult]]) -> Summary:
    """The "Overall" row (paper Table 2): per-column harmonic means over all sections of all
    machines; its ``hmean`` is the official score."""
    return _summary([r for secs in results.values() for r in secs.values()])


def official_score(results: Mapping[str, Mapping[str, SectionResult]]) -> float | None:
    """Official DCASE 2022 score: hmean of all AUC-S, all AUC-T and all pAUC values (the ``hmean``
    of :func:`overall_summary`).

    Values that could not be computed (incomplete test sets) are left out; ``None`` when no value
    exists. :func:`official_values` says which values it averages over."""
    if not any(results.values()):
        raise ValueError("no sections to score")
    return overall_summary(results).hmean


def official_values(results: Mapping[str, Mapping[str, SectionResult]]) -> dict:
    """Which values the official score averages over: ``{"n_values", "n_expected", "left_out"}``,
    ``left_out`` a list of ``{"machine", "section", "value", "empty_groups"}`` (``value`` a key of
    :data:`OFFICIAL_KEYS`)."""
    left_out = [{"machine": m, "section": sec, "value": k, "empty_groups": list(r.empty_groups)}
                for m, secs in results.items() for sec, r in secs.items() for k in r.missing]
    n_expected = 3 * sum(len(secs) for secs in results.values())
    return {"n_values": n_expected - len(left_out), "n_expected": n_expected, "left_out": left_out}
