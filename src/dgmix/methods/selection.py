"""Label-free choice of a detector's scoring per machine type (not in the DG-Mix paper).

``scoring.select: pseudo`` picks the pooling over time, the back end and the domain handling of a
detector from a grid of candidates (default: the 70 cells of :mod:`dgmix.candidates`, pooling × back
end × domain handling) using the machine type's **normal training clips only**:

1. the training clips are split into ``folds`` folds, stratified by section and domain;
2. for each fold, every candidate is fitted on the other folds' clips and scores the held-out
   clips and their generic pseudo-anomalies (:mod:`dgmix.scoring.pseudo`: ±3-9 dB on a random
   band, on all frames / on the band's loudest frames / on a random stretch of frames);
3. a candidate's score is the harmonic mean over the three kinds of pseudo-anomaly of its ROC AUC
   (held-out normals against pseudo-anomalies, per fold and section, then averaged);
4. steps 1-3 are repeated ``repeats`` times with new folds and new pseudo-anomalies, and the AUCs
   of all repeats averaged (repeated cross-validation: a steadier ranking of close candidates);
5. the highest score wins; ties go to the earlier candidate in the grid (max pooling, 1-NN first).

No test clip and no test label takes part, so the choice can be reported on a test set honestly.
Why this rule: TWFR-GMM (Guan et al., ICASSP 2023) tunes its pooling factor r per machine type on
the labelled development test set; a user with a new machine has no such set, and a fixed r chosen
on our synthetic benchmark did not carry over to real valve clips (docs/results.md §6.1). The
pseudo-anomalies are the interpretation: the paper says nothing about this step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from dgmix.candidates import SCORING_CANDIDATES, candidate_fields
from dgmix.metrics.dcase import hmean
from dgmix.scoring.backends import fit_backend, score_rows
from dgmix.scoring.pooling import pool
from dgmix.scoring.pseudo import SCOPES, make_pseudo_anomalies

__all__ = ["Selection", "fold_ids", "select_scoring"]

#: folds of the cross-validation (fewer when a section has fewer clips)
FOLDS = 5


@dataclass
class CandidateResult:
    name: str
    score: float | None
    auc: dict[str, float]
    error: str | None = None


@dataclass
class Selection:
    """What :func:`select_scoring` measured and chose (written to ``selection.json``)."""

    chosen: str
    fields: dict[str, Any]
    folds: int
    repeats: int
    n_clips: int
    n_pseudo: int
    seconds: float
    results: list[CandidateResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "highest harmonic mean over pseudo-anomaly kinds of the cross-validated AUC "
                    "on the training clips (dgmix.methods.selection)",
            "chosen": self.chosen, "fields": self.fields, "folds": self.folds, "repeats": self.repeats,
            "n_clips": self.n_clips, "n_pseudo_anomalies": self.n_pseudo, "seconds": round(self.seconds, 2),
            "candidates": [asdict(r) for r in self.results],
        }


def fold_ids(sections: Sequence[int], domains: Sequence[int], folds: int,
             seed: int | Sequence[int] = 0) -> np.ndarray:
    """Fold of each clip: within each (section, domain) group, clips in a seeded random order are
    dealt round-robin, so every fold holds each group's clips as evenly as possible."""
    sec, dom = np.asarray(sections), np.asarray(domains)
    out = np.zeros(len(sec), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for key in sorted(set(zip(sec.tolist(), dom.tolist()))):
        idx = np.flatnonzero((sec == key[0]) & (dom == key[1]))
        idx = idx[rng.permutation(len(idx))]
        out[idx] = (np.arange(len(idx)) + int(rng.integers(folds))) % folds
    return out


def _auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(y, np.r_[normal, anomalous]))


def select_scoring(features: Sequence[np.ndarray], sections: Sequence[int], domains: Sequence[int],
                   window_outputs: Callable[[np.ndarray], Tensor], candidates: Sequence[str] | None = None,
                   seed: int = 0, repeats: int = 1) -> Selection:
    """Choose a candidate by cross-validated pseudo-anomaly AUC on the training clips (module doc).

    ``features``: the training clips' log-mel ``(n_mels, T)``; ``sections`` / ``domains``: their
    section index and domain (0 source, 1 target); ``window_outputs`` turns one log-mel clip into
    its window embeddings (the detector's own :meth:`~dgmix.scoring.detector.Detector.window_outputs`).
    Each candidate's pooling is applied once per clip and its back end fitted on the pooled vectors."""
    t0 = time.perf_counter()
    names = list(candidates) if candidates else list(SCORING_CANDIDATES)
    sec = np.asarray(sections, dtype=np.int64)
    dom = np.asarray(domains, dtype=np.int64)
    counts = np.bincount(sec)
    if len(features) != len(sec) or len(sec) != len(dom):
        raise ValueError("features, sections and domains must have one entry per clip")
    if np.any(counts[np.unique(sec)] < 2):
        raise ValueError("choosing the scoring needs at least 2 training clips in every section")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    k = int(min(FOLDS, counts[np.unique(sec)].min()))
    clean_windows = [window_outputs(f) for f in features]
    clean_pooled: dict[str, Tensor] = {}
    aucs: dict[str, dict[str, list[float]]] = {n: {s: [] for s in SCOPES} for n in names}
    errors: dict[str, str] = {}
    n_pseudo = 0
    for rep in range(repeats):
        # repeat 0 draws from ``seed`` itself; later repeats from (seed, rep): new folds, new pseudo-anomalies
        rep_seed: int | list[int] = seed if rep == 0 else [seed, rep]
        fold = fold_ids(sec, dom, k, rep_seed)
        rng = np.random.default_rng(rep_seed)
        pseudo_windows, p_owner, p_scope = [], [], []
        for i, f in enumerate(features):
            for p, x in make_pseudo_anomalies(np.asarray(f), rng):
                pseudo_windows.append(window_outputs(x))
                p_owner.append(i)
                p_scope.append(p.scope)
        n_pseudo += len(pseudo_windows)
        owner, scope = np.asarray(p_owner), np.asarray(p_scope)
        pseudo_pooled: dict[str, Tensor] = {}
        for name in names:
            if name in errors:
                continue
            fields = candidate_fields(name)
            key = name.split("/")[0]
            if key not in pseudo_pooled:
                if key not in clean_pooled:
                    clean_pooled[key] = _pooled(clean_windows, fields)
                pseudo_pooled[key] = _pooled(pseudo_windows, fields)
            try:
                _cross_validate(aucs[name], clean_pooled[key], pseudo_pooled[key], fields, fold, k, sec, dom,
                                owner, scope, seed)
            except (ValueError, np.linalg.LinAlgError) as exc:  # a candidate the data cannot support
                errors[name] = str(exc).splitlines()[0]
    results = []
    for name in names:
        if name in errors:
            results.append(CandidateResult(name, None, {}, errors[name]))
            continue
        mean_auc = {sc: float(np.mean(v)) for sc, v in aucs[name].items()}
        results.append(CandidateResult(name, hmean(mean_auc.values()), mean_auc))
    ok = [r for r in results if r.score is not None]
    if not ok:
        raise ValueError(f"no scoring candidate could be fitted: {results[0].error}")
    best = max(ok, key=lambda r: r.score)  # max keeps the first of equal scores: grid order
    return Selection(best.name, candidate_fields(best.name), k, repeats, len(sec), n_pseudo,
                     time.perf_counter() - t0, results)


def _pooled(windows: list[Tensor], fields: dict[str, Any]) -> Tensor:
    return torch.stack([pool(w, fields["pooling"], fields["gwrp_r"]) for w in windows])


def _cross_validate(aucs: dict[str, list[float]], clean: Tensor, pseudo: Tensor, fields: dict[str, Any],
                    fold: np.ndarray, k: int, sec: np.ndarray, dom: np.ndarray, owner: np.ndarray, scope: np.ndarray,
                    seed: int) -> None:
    """One repeat of the cross-validation of one candidate: append its AUC per fold and section
    to ``aucs[scope]``. ``clean`` / ``pseudo``: one pooled vector per clip / pseudo-anomaly."""
    n_sections = int(sec.max()) + 1
    for f_id in range(k):
        bank = np.flatnonzero(fold != f_id)
        held = np.flatnonzero(fold == f_id)
        backend = fit_backend(fields["backend"], fields["per_domain"], clean[torch.from_numpy(bank)], sec[bank],
                              dom[bank], n_sections, seed)
        s_clean = score_rows(backend, clean[torch.from_numpy(held)], sec[held])
        pidx = np.flatnonzero(np.isin(owner, held))
        s_pseudo = score_rows(backend, pseudo[torch.from_numpy(pidx)], sec[owner[pidx]])
        if not (np.isfinite(s_clean).all() and np.isfinite(s_pseudo).all()):
            raise ValueError("non-finite scores")
        for s_id in np.unique(sec[held]):
            normal = s_clean[sec[held] == s_id]
            for sc in SCOPES:
                m = (sec[owner[pidx]] == s_id) & (scope[pidx] == sc)
                aucs[sc].append(_auc(normal, s_pseudo[m]))
