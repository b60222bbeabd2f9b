"""k-nearest-neighbour anomaly scores (paper §3.5, SPEC §6): :class:`KNNScorer`, the k-NN bank.

The paper's score is the Euclidean distance from a test clip's embedding (mean of its window
embeddings) to the nearest training-clip embedding (k = 1) of the same section, both domains in the
bank; larger = more anomalous. :class:`KNNScorer` implements that as its default and adds options
the paper does not use (each a parameter, default off); each extension lives in its own module:

* ``k > 1``: mean of the k smallest distances (:func:`dgmix.scoring.distance.knn_distance`, which
  also holds the distance maths and its memory blocks).
* ``pooling`` other than ``"mean"``: :mod:`dgmix.scoring.pooling`.
* ``domain_aware``: separate source and target banks per section; the distance to each bank is
  divided by that bank's scale and the score is the minimum over the two banks
  (:mod:`dgmix.scoring.domain_scale`).
* ``window_level``: the bank holds window embeddings; every test window gets a k-NN distance and a
  clip's score aggregates its windows' scores with ``aggregation`` = ``"mean"``, ``"max"`` or
  ``"topk-mean"`` (mean of the ``topk_k`` largest; :mod:`dgmix.scoring.window_aggregation`). With
  ``domain_aware`` the min over banks is taken per window, then aggregated.
* ``standardize`` (issue 14): every dimension of the bank and of the queries is standardised
  with the mean and std of that section's bank entries (before bank reduction), so a dimension with
  a wide normal range counts less; with 1-NN this is a nearest neighbour under a diagonal
  Mahalanobis distance. Buffers ``std_sections`` (S,), ``std_mean`` and ``std_scale`` (S, D).
* ``bank_reduce`` = ``"random"`` or ``"coreset"`` with ``bank_size``: keep at most ``bank_size``
  bank entries per section (per section *and domain* when ``domain_aware``); see
  :mod:`dgmix.scoring.bank_reduction`.

Input parsing (clip / window embeddings, section and domain labels) is in
:mod:`dgmix.scoring.knn_inputs`. :func:`knn_distance`, :func:`greedy_coreset` and
:func:`random_subset` are re-exported here.

Memory: the bank is N×D×4 bytes in float32 (clip level, 3 sections × 1000 clips × 320 dims ≈
3.8 MB per machine type; window level, ×32 windows ≈ 123 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dgmix.scoring.bank_reduction import REDUCTIONS, BankReduce, greedy_coreset, random_subset, select_bank
from dgmix.scoring.distance import knn_distance
from dgmix.scoring.domain_scale import domain_scales

# knn_distance, greedy_coreset and random_subset are re-exported (see __all__).
from dgmix.scoring.fitted import FittedScorer
from dgmix.scoring.knn_inputs import clip_items, domain_ids, section_ids
from dgmix.scoring.pooling import POOL_METHODS, PoolMethod
from dgmix.scoring.window_aggregation import AGGREGATIONS, Aggregation, aggregate

__all__ = [
    "KNNScorer",
    "greedy_coreset",
    "knn_distance",
    "random_subset",
]


class KNNScorer(FittedScorer):
    """Per-section k-NN anomaly scorer with its bank as buffers (module docstring).

    ``k`` is capped at the size of the bank it is applied to (e.g. a 10-clip target bank).

    Buffers: ``bank`` (N, D), ``bank_sections`` (N,), ``bank_domains`` (N,) (0 source, 1 target),
    ``bank_clips`` (N,) (index of the training clip in the ``fit`` call), ``scale_sections`` (S,)
    and ``scales`` (S, 2) (domain-aware scales). The configuration is kept as the module's extra
    state, so ``load_state_dict`` (buffers are resized on load) or :meth:`from_state_dict` restores
    everything.

    Inputs of :meth:`fit` / :meth:`score`: ``embeddings`` is a ``(C, D)`` tensor of clip embeddings,
    a ``(C, W, D)`` tensor or a list of ``(W_i, D)`` tensors of window embeddings (pooled with
    ``pooling`` unless ``window_level``), or a flat ``(sum W, D)`` window tensor with ``groups``
    (clip index per window). ``sections`` (ints or "00"-style strings) and ``domains`` (0/1 or
    "source"/"target") have one entry per clip.
    """

    bank: Tensor
    bank_sections: Tensor
    bank_domains: Tensor
    bank_clips: Tensor
    scale_sections: Tensor
    scales: Tensor
    std_sections: Tensor
    std_mean: Tensor
    std_scale: Tensor

    def __init__(
        self,
        k: int = 1,
        domain_aware: bool = False,
        window_level: bool = False,
        aggregation: Aggregation = "mean",
        topk_k: int = 3,
        pooling: PoolMethod = "mean",
        gwrp_r: float = 0.9,
        bank_reduce: BankReduce | None = None,
        bank_size: int | None = None,
        projection_dim: int | None = None,
        scale_sample: int = 4096,
        seed: int = 0,
        chunk: int = 4096,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        self.k = int(k)
        self.domain_aware = bool(domain_aware)
        self.window_level = bool(window_level)
        self.aggregation = aggregation
        self.topk_k = int(topk_k)
        self.pooling = pooling
        self.gwrp_r = float(gwrp_r)
        self.bank_reduce = bank_reduce
        self.bank_size = None if bank_size is None else int(bank_size)
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.scale_sample = int(scale_sample)
        self.seed = int(seed)
        self.chunk = int(chunk)
        self.standardize = bool(standardize)
        self.n_fit_clips = 0
        self._validate()
        self.register_buffer("bank", torch.empty(0, 0))
        self.register_buffer("bank_sections", torch.empty(0, dtype=torch.long))
        self.register_buffer("bank_domains", torch.empty(0, dtype=torch.long))
        self.register_buffer("bank_clips", torch.empty(0, dtype=torch.long))
        self.register_buffer("scale_sections", torch.empty(0, dtype=torch.long))
        self.register_buffer("scales", torch.empty(0, 2))
        self.register_buffer("std_sections", torch.empty(0, dtype=torch.long))
        self.register_buffer("std_mean", torch.empty(0, 0))
        self.register_buffer("std_scale", torch.empty(0, 0))

    # -- configuration / state ---------------------------------------------------------------
    _CONFIG = ("k", "domain_aware", "window_level", "aggregation", "topk_k", "pooling", "gwrp_r",
               "bank_reduce", "bank_size", "projection_dim", "scale_sample", "seed", "chunk", "standardize")

    def _validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.topk_k < 1:
            raise ValueError(f"topk_k must be >= 1, got {self.topk_k}")
        if self.pooling not in POOL_METHODS:
            raise ValueError(f"pooling must be one of {POOL_METHODS}, got {self.pooling!r}")
        if self.bank_reduce not in REDUCTIONS:
            raise ValueError(f"bank_reduce must be one of {REDUCTIONS}, got {self.bank_reduce!r}")
        if self.bank_reduce is not None and (self.bank_size is None or self.bank_size < 1):
            raise ValueError("bank_reduce needs bank_size >= 1")
        if self.scale_sample < 1 or self.chunk < 1:
            raise ValueError("scale_sample and chunk must be >= 1")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Bundles written before issue 14 have no standardisation buffers: they load as empty.
        for name in ("std_sections", "std_mean", "std_scale"):
            if prefix + "bank" in state_dict and prefix + name not in state_dict:
                state_dict[prefix + name] = torch.empty((0,) if name == "std_sections" else (0, 0),
                                                        dtype=self._buffers[name].dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Any]) -> KNNScorer:
        """Build a scorer from a ``state_dict()`` (configuration included)."""
        extra = state_dict.get("_extra_state")
        if extra is None:
            raise ValueError("state dict has no '_extra_state' entry (not a KNNScorer state)")
        scorer = cls(**extra["config"])
        scorer.load_state_dict(state_dict)
        return scorer

    @property
    def is_fitted(self) -> bool:
        return self.bank.shape[0] > 0

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + (
            f", bank={tuple(self.bank.shape)}"
        )

    # -- inputs ----------------------------------------------------------------------------
    def _items(self, embeddings: Tensor | Sequence[Tensor],
               groups: Tensor | Sequence[int] | None) -> tuple[Tensor, Tensor, int]:
        """(items (N, D), clip index per item (N,), n_clips); see :func:`clip_items`."""
        return clip_items(embeddings, groups, self.window_level, self.pooling, self.gwrp_r)

    # -- fitting ----------------------------------------------------------------------------
    @torch.no_grad()
    def fit(
        self,
        embeddings: Tensor | Sequence[Tensor],
        sections: Any,
        domains: Any = None,
        groups: Tensor | Sequence[int] | None = None,
    ) -> KNNScorer:
        """Fill the bank with training (normal) embeddings; returns ``self``.

        ``domains`` may be omitted unless ``domain_aware`` (then all entries count as source).
        """
        if self.domain_aware and domains is None:
            raise ValueError("domain_aware scoring needs the domain of every training clip")
        items, item_clip, n_clips = self._items(embeddings, groups)
        sec = section_ids(sections, n_clips)
        dom = domain_ids(domains, n_clips)
        item_sec, item_dom = sec[item_clip], dom[item_clip]
        if self.standardize:
            self._fit_standardizer(items, item_sec)
            items = self._standardized(items, item_sec)
        sel = select_bank(items, item_sec, item_dom, self.domain_aware, self.bank_reduce,
                          self.bank_size, self.projection_dim, self.seed)
        dev = items.device
        self.bank = items[sel.to(dev)].detach().clone()
        self.bank_sections = item_sec[sel].to(dev)
        self.bank_domains = item_dom[sel].to(dev)
        self.bank_clips = item_clip[sel].to(dev)
        self.n_fit_clips = n_clips
        if self.domain_aware:
            self.scale_sections, self.scales = domain_scales(
                self.bank, self.bank_sections, self.bank_domains, self.bank_clips,
                self.k, self.chunk, self.scale_sample, self.seed,
            )
        else:
            self.scale_sections = torch.empty(0, dtype=torch.long, device=dev)
            self.scales = torch.empty(0, 2, dtype=self.bank.dtype, device=dev)
        return self

    def _fit_standardizer(self, items: Tensor, item_sec: Tensor) -> None:
        """Per-section mean and std (population, floored at 1e-6) of the bank items."""
        secs = torch.unique(item_sec)
        mean = torch.stack([items[item_sec.to(items.device) == s].mean(dim=0) for s in secs.tolist()])
        std = torch.stack([items[item_sec.to(items.device) == s].std(dim=0, correction=0) for s in secs.tolist()])
        self.std_sections = secs.to(items.device)
        self.std_mean = mean
        self.std_scale = std.clamp_min(1e-6)

    def _standardized(self, items: Tensor, item_sec: Tensor) -> Tensor:
        """``items`` standardised with the statistics of each item's section (module docstring)."""
        rows = torch.searchsorted(self.std_sections.cpu(), item_sec.cpu()).clamp_max(self.std_sections.numel() - 1)
        if not bool((self.std_sections.cpu()[rows] == item_sec.cpu()).all()):
            raise ValueError("a section has no standardisation statistics (it has no training embeddings)")
        rows = rows.to(self.std_mean.device)
        return (items.to(self.std_mean.device) - self.std_mean[rows]) / self.std_scale[rows]

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("KNNScorer is not fitted: call fit() or load a state dict first")

    def _bank_distance(self, q: Tensor, mask: Tensor, exclude_items: Tensor | None) -> Tensor:
        entries = self.bank[mask]
        n = entries.shape[0]
        if exclude_items is None:
            return knn_distance(q, entries, min(self.k, n), self.chunk)
        return knn_distance(q, entries, min(self.k, n), self.chunk, query_groups=exclude_items,
                            bank_groups=self.bank_clips[mask], partial=True)

    @torch.no_grad()
    def score(
        self,
        embeddings: Tensor | Sequence[Tensor],
        sections: Any,
        groups: Tensor | Sequence[int] | None = None,
        exclude: Tensor | Sequence[int] | None = None,
    ) -> Tensor:
        """Anomaly score per clip, ``(C,)``; larger = more anomalous (paper §3.5).

        ``exclude`` (optional, one per clip): the index of a training clip (as numbered in
        ``fit``) whose bank entries that clip must not match, ``-1`` for none. See
        :meth:`loo_scores`.
        """
        self._check_fitted()
        items, item_clip, n_clips = self._items(embeddings, groups)
        sec = section_ids(sections, n_clips)
        dev = self.bank.device
        items = items.to(device=dev, dtype=self.bank.dtype)
        item_sec = sec[item_clip].to(dev)
        if self.standardize:
            items = self._standardized(items, item_sec).to(device=dev, dtype=self.bank.dtype)
        excl_items = None
        if exclude is not None:
            ex = torch.as_tensor(exclude).reshape(-1).long().cpu()
            if ex.numel() != n_clips:
                raise ValueError(f"exclude has {ex.numel()} entries for {n_clips} clips")
            excl_items = ex[item_clip].to(dev)
        item_scores = torch.empty(items.shape[0], dtype=self.bank.dtype, device=dev)
        for s in torch.unique(item_sec).tolist():
            qmask = item_sec == s
            smask = self.bank_sections == s
            if not bool(smask.any()):
                known = sorted(set(torch.unique(self.bank_sections).tolist()))
                raise ValueError(
                    f"section {s:02d} has no training embeddings in the bank "
                    f"(bank sections: {', '.join(f'{x:02d}' for x in known)})"
                )
            q = items[qmask]
            qex = excl_items[qmask] if excl_items is not None else None
            if not self.domain_aware:
                item_scores[qmask] = self._bank_distance(q, smask, qex)
                continue
            row = int(torch.nonzero(self.scale_sections == s).reshape(-1)[0])
            best: Tensor | None = None
            for d in (0, 1):
                dmask = smask & (self.bank_domains == d)
                if not bool(dmask.any()):
                    continue
                dist = self._bank_distance(q, dmask, qex) / self.scales[row, d]
                best = dist if best is None else torch.minimum(best, dist)
            assert best is not None
            item_scores[qmask] = best
        if excl_items is not None and bool(torch.isinf(item_scores).any()):
            bad = int(item_clip[torch.nonzero(torch.isinf(item_scores.cpu()))[0, 0]])
            raise ValueError(
                f"clip {bad} has no bank entry left in its section once its own clip is left out "
                "(a section with a single training clip)"
            )
        if not self.window_level:
            return item_scores
        return aggregate(item_scores, item_clip.to(dev), n_clips, self.aggregation, self.topk_k)

    def loo_scores(
        self,
        embeddings: Tensor | Sequence[Tensor],
        sections: Any,
        groups: Tensor | Sequence[int] | None = None,
    ) -> Tensor:
        """Leave-one-out scores of the training clips (SPEC §6, for the decision threshold).

        Pass the same inputs as to :meth:`fit`; clip i is scored without its own bank entries.
        """
        self._check_fitted()
        _, _, n_clips = self._items(embeddings, groups)
        if n_clips != self.n_fit_clips:
            raise ValueError(
                f"loo_scores needs the {self.n_fit_clips} clips given to fit(), got {n_clips}"
            )
        return self.score(embeddings, sections, groups, exclude=torch.arange(n_clips))

    def forward(self, embeddings: Tensor, sections: Any) -> Tensor:
        """Same as :meth:`score`."""
        return self.score(embeddings, sections)
