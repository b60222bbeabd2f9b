"""Detector building blocks shared by the methods: the k-NN back end (paper §3.5, SPEC §6),
per-section thresholds, and the embedding cache key."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dgmix.config import RunConfig, ScoringConfig
from dgmix.methods.machine import MachineData
from dgmix.methods.selection import Selection, select_scoring
from dgmix.scoring import KNNScorer, fit_gamma_threshold
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.embed import resolve_device
from dgmix.scoring.gmm import GMMScorer
from dgmix.scoring.pseudo import PseudoAnomalies


def make_scorer(s: ScoringConfig, seed: int = 0) -> KNNScorer | GMMScorer:
    """The scorer of the scoring config: a KNNScorer (paper default: mean pooling, 1-NN, one bank)
    or, with ``backend: gmm``, a GMMScorer (issue 14)."""
    if s.backend == "gmm":
        return GMMScorer(pooling=s.pooling, gwrp_r=s.gwrp_r, covariance=s.gmm_covariance,
                         max_components=s.gmm_max_components, reg_covar=s.gmm_reg_covar,
                         domain=s.gmm_domain, folds=s.gmm_folds, seed=seed)
    return KNNScorer(
        k=s.k, domain_aware=s.domain_aware, window_level=s.window_level,
        aggregation=s.window_aggregation, topk_k=s.topk, pooling=s.pooling, gwrp_r=s.gwrp_r,
        bank_reduce=None if s.bank_reduce == "none" else s.bank_reduce,
        bank_size=s.bank_size if s.bank_reduce != "none" else None, seed=seed, standardize=s.standardize,
    )


def choose_scoring(
    md: MachineData, cfg: RunConfig, scoring: ScoringConfig,
    embed: Callable[[Sequence[np.ndarray]], list[torch.Tensor]],
) -> tuple[ScoringConfig, Selection]:
    """``scoring.select: pseudo``: the label-free choice of pooling, back end and domain handling
    on the training clips (:mod:`dgmix.methods.selection`); returns the scoring with the chosen
    fields (and ``select: none``) and what the choice measured."""
    sel = select_scoring(
        scoring, md.train_feats, md.sections(md.train),
        [1 if r.bank_domain == "target" else 0 for r in md.train], embed, lambda s: make_scorer(s, cfg.seed),
        candidates=scoring.select_candidates or None, folds=scoring.select_folds, seed=cfg.seed,
        repeats=scoring.select_repeats,
        settings=PseudoAnomalies(gain_db=(scoring.select_gain_db[0], scoring.select_gain_db[1])),
    )
    return dataclasses.replace(scoring, **sel.fields, select="none"), sel


def section_thresholds(scores: np.ndarray, sections: np.ndarray, n: int, percentile: float) -> list[float]:
    """One decision threshold per section: gamma fit to the training scores (SPEC §6)."""
    return [fit_gamma_threshold(scores[sections == s], percentile) for s in range(n)]


def embedding_key(encoder: nn.Module | None, bundle: DetectorBundle) -> str:
    """What produced a set of window embeddings: the encoder's weights and buffers (or "logmel")
    and the feature settings. The embedding cache is keyed by it, so a reused cache can never
    serve one model's embeddings for another."""
    h = hashlib.blake2b(digest_size=12)
    h.update(bundle.params.key().encode())
    if encoder is None:
        h.update(b"logmel")
    else:
        for name, t in encoder.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def knn_detector(
    method: str, encoder: nn.Module | None, md: MachineData, cfg: RunConfig, scoring: ScoringConfig,
    cache: dict | None = None,
) -> tuple[DetectorBundle, np.ndarray]:
    """Fit the k-NN bank (or the GMM, ``scoring.backend: gmm``) on the training clips and thresholds
    on leave-one-out (GMM: cross-fitted) scores; score the test clips.

    ``encoder`` None scores log-mel frames (the ``logmel`` method). ``cache`` (a dict owned by
    the caller) keeps window embeddings between scoring options of the same model, keyed by
    :func:`embedding_key`, so each window goes through the encoder once."""
    kind = "logmel" if encoder is None else "knn"
    bundle = DetectorBundle(kind, md.machine, method, cfg.features, md.section_names,
                            scorer=make_scorer(scoring, cfg.seed), encoder=encoder, model_config=cfg.model)
    cache = {} if cache is None else cache
    key = embedding_key(encoder, bundle)
    device = resolve_device(scoring.device)
    if key not in cache:
        # the bundle embeds with its inference copy of the encoder; the saved encoder stays on the CPU
        cache[key] = (bundle.embed(md.train_feats, device), bundle.embed(md.test_feats, device))
    train_emb, test_emb = cache[key]
    tr_sec = md.sections(md.train)
    tr_dom = [r.bank_domain for r in md.train]
    if scoring.select == "pseudo":
        scoring, sel = choose_scoring(md, cfg, scoring, lambda f: bundle.embed(f, device))
        bundle.selection = sel.to_dict()
        bundle.scorer = make_scorer(scoring, cfg.seed)
    scorer = bundle.scorer
    scorer.fit(train_emb, tr_sec, tr_dom)
    if isinstance(scorer, GMMScorer):
        loo = scorer.loo_scores(train_emb, tr_sec, tr_dom).double().numpy()
    else:
        loo = scorer.loo_scores(train_emb, tr_sec).double().numpy()
    bundle.thresholds.copy_(torch.as_tensor(
        section_thresholds(loo, tr_sec, len(md.section_names), scoring.threshold_percentile)))
    return bundle, scorer.score(test_emb, md.sections(md.test)).double().numpy()
