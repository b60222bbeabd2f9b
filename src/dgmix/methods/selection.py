"""Label-free choice of a detector's scoring per machine type (not in the DG-Mix paper).

``scoring.select: pseudo`` picks the pooling over time, the back end and the domain handling of a
detector from a grid of candidates (default: the 70 cells of :mod:`dgmix.candidates`, pooling × back
end × domain handling) using the machine type's **normal training clips only**. One repeat:

1. the training clips are dealt into ``FOLDS`` folds, stratified by section and domain;
2. from each fold, at most ``ceil(HELD_OUT / FOLDS)`` clips of every (section, domain) group are
   held out (all of them when the group is smaller), and each held-out clip gets six generic
   pseudo-anomalies (:mod:`dgmix.scoring.pseudo`: ±3-9 dB on a random band, on all frames / on
   the band's loudest frames / on a random stretch of frames);
3. every candidate is fitted on the clips of the other folds (the whole of them: the bank or
   density has the size of the final one, less one fold) and scores its fold's held-out clips
   and their pseudo-anomalies;
4. with these out-of-fold scores, a ROC AUC for every section, **domain** and kind of
   pseudo-anomaly: the held-out normals of that section and domain against the pseudo-anomalies
   made from them. A candidate's score is the harmonic mean, over domains and kinds, of these
   AUCs averaged over sections and repeats; the target domain, a tenth of the clips in DCASE,
   weighs as much as the source domain, as in the official score (harmonic mean of AUC source and
   AUC target);
5. repeats draw new folds, held-out clips and pseudo-anomalies; after each repeat but the last,
   the lower half of the candidates still running is dropped (successive halving: Jamieson and
   Talwalkar, AISTATS 2016), so 70 candidates over 5 repeats cost 137 candidate-repeats, not 350;
6. the highest score among the candidates that ran every repeat wins; ties go to the earlier
   candidate in the grid (max pooling, 1-NN first).

Cost: a pooled copy of the training clips per pooling and one of the held-out clips' pseudo-anomalies
are all that is kept. For the ``logmel`` detector (its windows are the log-mel frames) a
pseudo-anomaly's pooled vector is computed from its band's rows only (the other rows are the clean
clip's); a gain on all frames shifts every pooling by the gain, exactly. With ``HELD_OUT`` fixed,
the work grows linearly in the number of training clips (bank size × held-out count); the
component count of ``gmm-diag`` is chosen by BIC once per section on all clips and reused by the
folds. Pseudo-anomalies that pooling does not see score exactly as their clean clip.

No test clip and no test label takes part, so the choice can be reported on a test set honestly.
Why this rule: TWFR-GMM (Guan et al., ICASSP 2023) tunes its pooling factor r per machine type on
the labelled development test set; a user with a new machine has no such set, and a fixed r chosen
on our synthetic benchmark did not carry over to real valve clips (docs/results.md §6.1). The
pseudo-anomalies are the interpretation: the paper says nothing about this step.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from dgmix.candidates import POOLINGS, SCORING_CANDIDATES, candidate_fields, parse_backend
from dgmix.metrics.dcase import hmean
from dgmix.scoring.backends import make_backend, score_rows
from dgmix.scoring.gmm import one_blas_thread
from dgmix.scoring.pooling import gwrp_weights
from dgmix.scoring.pseudo import SCOPES, PseudoAnomaly, draw_pseudo_anomalies, perturb

__all__ = ["FOLDS", "HELD_OUT", "Selection", "fold_ids", "held_out", "rank_auc", "select_scoring"]

#: folds of the cross-validation (fewer when a section has fewer clips)
FOLDS = 5
#: held-out clips per section and domain in one repeat (all of them when there are fewer)
HELD_OUT = 100
DOMAIN_NAMES = ("source", "target")
#: candidates evaluated at once, each on one thread (torch and BLAS): the results do not depend on
#: it or on the machine's core count
WORKERS = max(1, min(2, os.cpu_count() or 1))


@contextlib.contextmanager
def _one_thread_each() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with one_blas_thread():
            yield
    finally:
        torch.set_num_threads(before)


@dataclass
class CandidateResult:
    name: str
    score: float | None
    auc: dict[str, float]
    repeats: int = 0
    error: str | None = None


@dataclass
class Selection:
    """What :func:`select_scoring` measured and chose (written to ``selection.json``)."""

    chosen: str
    fields: dict[str, Any]
    folds: int
    repeats: int
    n_clips: int
    n_held_out: int
    n_pseudo: int
    seconds: float
    results: list[CandidateResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "highest harmonic mean over domains and pseudo-anomaly kinds of the out-of-fold AUC on the "
                    "training clips, lower half dropped after each repeat (dgmix.methods.selection)",
            "chosen": self.chosen, "fields": self.fields, "folds": self.folds, "repeats": self.repeats,
            "n_clips": self.n_clips, "n_held_out": self.n_held_out, "n_pseudo_anomalies": self.n_pseudo,
            "seconds": round(self.seconds, 2), "candidates": [asdict(r) for r in self.results],
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


def held_out(fold: np.ndarray, sections: np.ndarray, domains: np.ndarray, folds: int, limit: int,
             rng: np.random.Generator) -> np.ndarray:
    """Sorted rows of the held-out clips: from every fold, at most ``ceil(limit / folds)`` clips of
    each (section, domain) group, drawn at random."""
    per_fold = max(1, math.ceil(limit / folds))
    keep = []
    for key in sorted(set(zip(sections.tolist(), domains.tolist(), fold.tolist()))):
        idx = np.flatnonzero((sections == key[0]) & (domains == key[1]) & (fold == key[2]))
        keep.append(idx if len(idx) <= per_fold else rng.choice(idx, per_fold, replace=False))
    return np.sort(np.concatenate(keep))


def rank_auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """ROC AUC of ``anomalous`` against ``normal`` scores (Mann-Whitney, ties count one half)."""
    ranks = rankdata(np.r_[normal, anomalous])
    n, m = len(normal), len(anomalous)
    return float((ranks[n:].sum() - m * (m + 1) / 2) / (n * m))


class _Pooler:
    """Every pooling of the grid at once: ranks sorted once per clip (numpy, ~10x faster than
    torch on these sizes), then one weighted sum each. ``window_outputs`` None: the windows are
    the clip's log-mel frames (``logmel``)."""

    def __init__(self, names: Sequence[str], window_outputs: Callable[[np.ndarray], Tensor] | None) -> None:
        self.names, self.window_outputs = list(names), window_outputs
        self._weights: dict[int, np.ndarray] = {}

    def weights(self, n: int) -> np.ndarray:
        """``(n, P)`` float64 weights over ascending ranks of ``n`` windows, one column per pooling."""
        if n not in self._weights:
            col = torch.zeros(n, 1, dtype=torch.float64)
            cols = []
            for name in self.names:
                f = POOLINGS[name]
                cols.append(gwrp_weights(col, {"max": 0.0, "mean": 1.0}.get(f["pooling"], f.get("gwrp_r"))))
            self._weights[n] = torch.cat(cols, dim=1).numpy()[::-1].copy()  # rank 0 = the largest, last
        return self._weights[n]

    def pool(self, rows: np.ndarray) -> Tensor:
        """``(P, D)`` float32: the poolings of ``rows`` ``(D, W)`` (one row per dimension) over W."""
        ranked = np.sort(rows, axis=1).astype(np.float64)
        return torch.from_numpy((ranked @ self.weights(rows.shape[1])).T.astype(np.float32))

    def clean(self, clip: np.ndarray) -> Tensor:
        return self.pool(self._rows(clip))

    def pseudo(self, clip: np.ndarray, clean: Tensor, p: PseudoAnomaly) -> Tensor:
        """The poolings of ``clip`` with the pseudo-anomaly ``p`` applied."""
        if self.window_outputs is not None:
            return self.pool(self._rows(perturb(clip, p)))
        out = clean.clone()
        if p.frames is None:  # every frame of the band moves by the gain, so does every pooling
            out[:, p.lo:p.hi] += p.gain_db
        else:
            band = np.array(clip[p.lo:p.hi], dtype=np.float32)
            band[:, list(p.frames)] += p.gain_db
            out[:, p.lo:p.hi] = self.pool(band)
        return out

    def _rows(self, clip: np.ndarray) -> np.ndarray:
        if self.window_outputs is None:
            return np.asarray(clip, dtype=np.float32)
        return self.window_outputs(clip).detach().float().numpy().T


def select_scoring(features: Sequence[np.ndarray], sections: Sequence[int], domains: Sequence[int],
                   window_outputs: Callable[[np.ndarray], Tensor] | None = None,
                   candidates: Sequence[str] | None = None, seed: int = 0, repeats: int = 1) -> Selection:
    """Choose a candidate by out-of-fold pseudo-anomaly AUC on the training clips (module doc).

    ``features``: the training clips' log-mel ``(n_mels, T)``; ``sections`` / ``domains``: their
    section index and domain (0 source, 1 target); ``window_outputs`` turns one log-mel clip into
    its window embeddings (the detector's own :meth:`~dgmix.scoring.detector.Detector.window_outputs`),
    None when the windows are the log-mel frames themselves."""
    t0 = time.perf_counter()
    names = list(candidates) if candidates else list(SCORING_CANDIDATES)
    sec = np.asarray(sections, dtype=np.int64)
    dom = np.asarray(domains, dtype=np.int64)
    if len(features) != len(sec) or len(sec) != len(dom):
        raise ValueError("features, sections and domains must have one entry per clip")
    counts = np.bincount(sec)
    if np.any(counts[np.unique(sec)] < 2):
        raise ValueError("choosing the scoring needs at least 2 training clips in every section")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    k = int(min(FOLDS, counts[np.unique(sec)].min()))
    pool_keys = list(dict.fromkeys(n.split("/")[0] for n in names))
    pooler = _Pooler(pool_keys, window_outputs)
    clean = torch.stack([pooler.clean(f) for f in features])  # (N, P, D)
    aucs: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    ran = dict.fromkeys(names, 0)
    errors: dict[str, str] = {}
    components: dict[tuple[int, bool], dict[int, int]] = {}
    alive, n_held, n_pseudo = list(names), 0, 0
    for rep in range(repeats):
        # repeat 0 draws from ``seed`` itself; later repeats from (seed, rep)
        rep_seed: int | list[int] = seed if rep == 0 else [seed, rep]
        fold = fold_ids(sec, dom, k, rep_seed)
        rng = np.random.default_rng(rep_seed)
        held = held_out(fold, sec, dom, k, HELD_OUT, rng)
        pseudo, owner, scope = [], [], []
        for i in held:
            for p in draw_pseudo_anomalies(np.asarray(features[i]), rng):
                pseudo.append(pooler.pseudo(features[i], clean[i], p))
                owner.append(i)
                scope.append(p.scope)
        pseudo_t = torch.stack(pseudo)
        n_held, n_pseudo = n_held + len(held), n_pseudo + len(pseudo)
        draws = _Draws(fold, held, pseudo_t, np.asarray(owner), np.asarray(scope),
                       (pseudo_t == clean[np.asarray(owner)]).all(dim=2))

        def run(name: str, draws: _Draws = draws) -> None:
            try:
                _evaluate(aucs[name], name, pool_keys, clean, draws, sec, dom, k, seed, components)
                ran[name] += 1
            except (ValueError, np.linalg.LinAlgError) as exc:  # a candidate the data cannot support
                errors[name] = str(exc).splitlines()[0]

        with _one_thread_each(), ThreadPoolExecutor(WORKERS) as workers:
            list(workers.map(run, alive))
        alive = [n for n in alive if n not in errors]
        if rep < repeats - 1 and len(alive) > 1:
            ranked = sorted(alive, key=lambda n: -_score(aucs[n]))  # stable: grid order breaks ties
            keep = set(ranked[: math.ceil(len(alive) / 2)])
            alive = [n for n in alive if n in keep]
    results = [CandidateResult(n, None, {}, ran[n], errors[n]) if n in errors else
               CandidateResult(n, _score(aucs[n]), {key: float(np.mean(v)) for key, v in aucs[n].items()}, ran[n])
               for n in names]
    if not alive:
        raise ValueError(f"no scoring candidate could be fitted: {results[0].error}")
    best = max(alive, key=lambda n: _score(aucs[n]))  # max keeps the first of equal scores: grid order
    return Selection(best, candidate_fields(best), k, repeats, len(sec), n_held, n_pseudo,
                     time.perf_counter() - t0, results)


@dataclass
class _Draws:
    """One repeat's folds, held-out rows and their pseudo-anomalies (pooled ``(M, P, D)``, the clip
    each came from, its kind, and whether each pooling left it equal to its clean clip)."""

    fold: np.ndarray
    held: np.ndarray
    pseudo: Tensor
    owner: np.ndarray
    scope: np.ndarray
    unchanged: Tensor


def _score(aucs: dict[str, list[float]]) -> float:
    """Harmonic mean over (domain, kind) of the mean AUC."""
    return hmean([float(np.mean(v)) for v in aucs.values()])


def _evaluate(aucs: dict[str, list[float]], name: str, pool_keys: list[str], clean: Tensor, d: _Draws,
              sec: np.ndarray, dom: np.ndarray, k: int, seed: int,
              components: dict[tuple[int, bool], dict[int, int]]) -> None:
    """One repeat of one candidate: append its AUC per section to ``aucs["<domain>/<kind>"]``."""
    fields = candidate_fields(name)
    p = pool_keys.index(name.split("/")[0])
    x = clean[:, p]
    n_sections = int(sec.max()) + 1
    gmm = parse_backend(fields["backend"])["kind"] == "gmm-diag" and not fields["per_domain"]
    if gmm and (p, False) not in components:  # BIC once on all clips, kept for the folds
        components[(p, False)] = make_backend("gmm-diag", False, seed).fit(x, sec, dom, n_sections).components
    s_clean = np.full(len(sec), np.nan)
    s_pseudo = np.full(len(d.owner), np.nan)
    for f_id in range(k):
        bank = np.flatnonzero(d.fold != f_id)
        q = d.held[d.fold[d.held] == f_id]
        pq = np.flatnonzero(np.isin(d.owner, q))
        model = make_backend(fields["backend"], fields["per_domain"], seed)
        extra = {"components": components[(p, False)]} if gmm else {}
        model.fit(x[torch.from_numpy(bank)], sec[bank], dom[bank], n_sections, **extra)
        s_clean[q] = score_rows(model, x[torch.from_numpy(q)], sec[q])
        s_pseudo[pq] = score_rows(model, d.pseudo[torch.from_numpy(pq), p], sec[d.owner[pq]])
    same = d.unchanged[:, p].numpy()
    s_pseudo[same] = s_clean[d.owner[same]]  # what pooling does not see scores as the clean clip
    if not (np.isfinite(s_clean[d.held]).all() and np.isfinite(s_pseudo).all()):
        raise ValueError("non-finite scores")
    for s_id in np.unique(sec[d.held]):
        for dm in np.unique(dom[d.held]):
            rows = d.held[(sec[d.held] == s_id) & (dom[d.held] == dm)]
            m = np.isin(d.owner, rows)
            for sc in SCOPES:
                aucs.setdefault(f"{DOMAIN_NAMES[dm]}/{sc}", []).append(
                    rank_auc(s_clean[rows], s_pseudo[m & (d.scope == sc)]))
