"""k-nearest-neighbour anomaly scores (paper §3.5, SPEC §6).

The paper's score is the Euclidean distance from a test clip's embedding (mean of its window
embeddings) to the nearest training-clip embedding (k = 1) of the same section, both domains in the
bank; larger = more anomalous. :class:`KNNScorer` implements that as its default and adds options
the paper does not use (each a parameter, default off):

* ``k > 1``: mean of the k smallest distances.
* ``domain_aware``: separate source and target banks per section; the distance to each bank is
  divided by that bank's scale (the mean leave-one-out k-NN distance inside it, i.e. how far
  apart normal training embeddings of that domain usually are) and the score is the minimum over
  the two banks. This stops the 10 target clips per section from being swamped by the 990 source
  clips' density. A bank whose scale cannot be estimated (one clip, or all points identical, so
  the scale is 0) uses the other domain's scale, and 1.0 when neither has one. With
  ``window_level`` the scale is computed on windows, leaving out every window of the query's own
  clip, from at most ``scale_sample`` (seeded random) query windows.
* ``window_level``: the bank holds window embeddings; every test window gets a k-NN distance and a
  clip's score aggregates its windows' scores with ``aggregation`` = ``"mean"``, ``"max"`` or
  ``"topk-mean"`` (mean of the ``topk_k`` largest). With ``domain_aware`` the min over banks is
  taken per window, then aggregated.
* ``bank_reduce`` = ``"random"`` or ``"coreset"`` with ``bank_size``: keep at most ``bank_size``
  bank entries per section (per section *and domain* when ``domain_aware``, so the small target
  bank is not thinned by the source bank's size); ``"coreset"`` is the greedy k-center selection
  of PatchCore (Roth et al., CVPR 2022), optionally computed in a ``projection_dim``-dimensional
  Gaussian random projection (the kept entries are the original embeddings).

Memory: the bank is N×D×4 bytes in float32 (clip level, 3 sections × 1000 clips × 320 dims ≈
3.8 MB per machine type; window level, ×32 windows ≈ 123 MB). Distances are computed in blocks of
``chunk`` queries × ``bank_chunk`` bank entries (4096 × 8192 × 4 bytes = 128 MB at most).

Distances use ``||a||² + ||b||² − 2 a·b`` on embeddings centred on the bank mean (which leaves the
distances unchanged and reduces cancellation error), clamped at 0 before the square root.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dgmix.scoring.pooling import POOL_METHODS, PoolMethod, pool_batch

Aggregation = Literal["mean", "max", "topk-mean"]
BankReduce = Literal["random", "coreset"]

__all__ = [
    "KNNScorer",
    "greedy_coreset",
    "knn_distance",
    "random_subset",
]

_AGGREGATIONS = ("mean", "max", "topk-mean")
_REDUCTIONS = (None, "random", "coreset")


def _float(x: Tensor) -> Tensor:
    if not torch.is_floating_point(x):
        return x.float()
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def knn_distance(
    queries: Tensor,
    bank: Tensor,
    k: int = 1,
    chunk: int = 4096,
    leave_one_out: bool = False,
    *,
    query_groups: Tensor | None = None,
    bank_groups: Tensor | None = None,
    bank_chunk: int = 8192,
    partial: bool = False,
) -> Tensor:
    """Mean Euclidean distance of each query to its ``k`` nearest bank entries; ``(M,)``.

    Args:
        queries: ``(M, D)``.
        bank: ``(N, D)``.
        k: number of neighbours (1 = the paper's §3.5 score).
        chunk: queries per block; ``bank_chunk``: bank entries per block.
        leave_one_out: the queries are the bank itself (``queries[i]`` is ``bank[i]``); entry i is
            left out of query i's neighbours (for training-set scores and thresholds, SPEC §6).
        query_groups, bank_groups: optional ``(M,)`` / ``(N,)`` integer labels; bank entries with
            the query's label are left out (e.g. all windows of the query's own clip). Both or
            neither; not together with ``leave_one_out``.
        partial: a query with fewer than ``k`` usable bank entries (after leaving out its group)
            gets the mean over those it has, and ``inf`` when it has none; without ``partial``
            that is an error.

    Raises:
        ValueError: bad shapes, ``k`` < 1, or fewer than ``k`` usable bank entries for a query.
    """
    if queries.ndim != 2 or bank.ndim != 2:
        raise ValueError(
            f"queries and bank must be 2-D, got {tuple(queries.shape)} and {tuple(bank.shape)}"
        )
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"dimension mismatch: queries D={queries.shape[1]}, bank D={bank.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk < 1 or bank_chunk < 1:
        raise ValueError("chunk sizes must be >= 1")
    m, n = queries.shape[0], bank.shape[0]
    if (query_groups is None) != (bank_groups is None):
        raise ValueError("give both query_groups and bank_groups, or neither")
    if leave_one_out:
        if query_groups is not None:
            raise ValueError("leave_one_out and groups cannot be combined")
        if m != n:
            raise ValueError(f"leave_one_out needs queries == bank, got {m} queries, {n} bank rows")
        query_groups = torch.arange(m, device=bank.device)
        bank_groups = query_groups
    if query_groups is not None and bank_groups is not None:
        query_groups = torch.as_tensor(query_groups, device=bank.device).reshape(-1)
        bank_groups = torch.as_tensor(bank_groups, device=bank.device).reshape(-1)
        if query_groups.numel() != m or bank_groups.numel() != n:
            raise ValueError("group labels must have one entry per query / bank row")
    avail = n - (1 if leave_one_out else 0)
    if k > avail and not partial:
        raise ValueError(f"k={k} but the bank has only {avail} usable entries")
    dtype = torch.promote_types(_float(queries).dtype, _float(bank).dtype)
    b = bank.to(dtype)
    q = queries.to(device=b.device, dtype=dtype)
    out = torch.empty(m, dtype=dtype, device=b.device)
    if m == 0:
        return out
    center = b.mean(dim=0, keepdim=True)
    b = b - center
    q = q - center
    b2 = (b * b).sum(dim=1)
    for qs in range(0, m, chunk):
        qe = min(qs + chunk, m)
        qc = q[qs:qe]
        q2 = (qc * qc).sum(dim=1, keepdim=True)
        best: Tensor | None = None
        for bs in range(0, n, bank_chunk):
            be = min(bs + bank_chunk, n)
            d2 = (q2 + b2[None, bs:be]).addmm_(qc, b[bs:be].T, alpha=-2.0).clamp_min_(0.0)
            if query_groups is not None and bank_groups is not None:
                d2.masked_fill_(query_groups[qs:qe, None] == bank_groups[None, bs:be], math.inf)
            v = torch.topk(d2, min(k, be - bs), dim=1, largest=False).values
            if best is not None:
                v = torch.cat([best, v], dim=1)
                v = torch.topk(v, min(k, v.shape[1]), dim=1, largest=False).values
            best = v
        assert best is not None
        if partial:
            finite = torch.isfinite(best)
            total = torch.where(finite, best.sqrt(), torch.zeros_like(best)).sum(dim=1)
            count = finite.sum(dim=1)
            out[qs:qe] = torch.where(count > 0, total / count.clamp_min(1), math.inf)
            continue
        if best.shape[1] < k or torch.isinf(best).any():
            raise ValueError(f"some queries have fewer than k={k} bank entries outside their group")
        out[qs:qe] = best.sqrt().mean(dim=1)
    return out


def random_subset(n_total: int, n: int, seed: int = 0) -> Tensor:
    """``n`` distinct indices in ``[0, n_total)`` (sorted), drawn with a seeded generator."""
    if n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n_total, generator=g)[:n]).values


def greedy_coreset(
    x: Tensor,
    n: int,
    projection_dim: int | None = None,
    seed: int = 0,
    start: int | None = None,
) -> Tensor:
    """Greedy k-center coreset (PatchCore): indices of ``n`` rows of ``x`` ``(N, D)``.

    Starts from row ``start`` (default: a seeded random row) and repeatedly adds the row farthest
    from the rows chosen so far (Euclidean). With ``projection_dim`` < D the distances are computed
    on ``x @ P``, ``P`` a seeded Gaussian ``(D, projection_dim)`` matrix (Johnson-Lindenstrauss).
    Returns the indices in selection order. Cost O(n·N·D) time, O(N) extra memory.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    n_total = x.shape[0]
    if n < 1:
        raise ValueError(f"coreset size must be >= 1, got {n}")
    if n >= n_total:
        return torch.arange(n_total, device=x.device)
    g = torch.Generator().manual_seed(seed)
    feats = _float(x)
    if projection_dim is not None and projection_dim < feats.shape[1]:
        proj = torch.randn(feats.shape[1], projection_dim, generator=g, dtype=feats.dtype)
        feats = feats @ proj.to(feats.device)
    if start is None:
        start = int(torch.randint(n_total, (1,), generator=g))
    if not 0 <= start < n_total:
        raise ValueError(f"start index {start} out of range [0, {n_total})")
    chosen = torch.empty(n, dtype=torch.long, device=x.device)
    chosen[0] = start
    min_d = ((feats - feats[start]) ** 2).sum(dim=1)
    for i in range(1, n):
        nxt = int(torch.argmax(min_d))
        chosen[i] = nxt
        min_d = torch.minimum(min_d, ((feats - feats[nxt]) ** 2).sum(dim=1))
    return chosen


def _section_ids(sections: Any, n: int, what: str = "sections") -> Tensor:
    if isinstance(sections, Tensor):
        t = sections.reshape(-1).long().cpu()
    else:
        vals = list(sections)
        out = []
        for v in vals:
            if isinstance(v, str):
                if not v.isdigit():
                    raise ValueError(f"{what}: section id {v!r} is not a number like '00'")
                out.append(int(v))
            else:
                out.append(int(v))
        t = torch.tensor(out, dtype=torch.long)
    if t.numel() != n:
        raise ValueError(f"{what}: expected {n} entries (one per clip), got {t.numel()}")
    return t


def _domain_ids(domains: Any, n: int) -> Tensor:
    if domains is None:
        return torch.zeros(n, dtype=torch.long)
    if isinstance(domains, Tensor):
        t = domains.reshape(-1).long().cpu()
    else:
        out = []
        for v in domains:
            if isinstance(v, str):
                if v not in ("source", "target"):
                    raise ValueError(f"domain must be 'source' or 'target', got {v!r}")
                out.append(1 if v == "target" else 0)
            else:
                out.append(int(v))
        t = torch.tensor(out, dtype=torch.long)
    if t.numel() != n:
        raise ValueError(f"domains: expected {n} entries (one per clip), got {t.numel()}")
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("domain ids must be 0 (source) or 1 (target)")
    return t


class KNNScorer(nn.Module):
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
        self.n_fit_clips = 0
        self._validate()
        self.register_buffer("bank", torch.empty(0, 0))
        self.register_buffer("bank_sections", torch.empty(0, dtype=torch.long))
        self.register_buffer("bank_domains", torch.empty(0, dtype=torch.long))
        self.register_buffer("bank_clips", torch.empty(0, dtype=torch.long))
        self.register_buffer("scale_sections", torch.empty(0, dtype=torch.long))
        self.register_buffer("scales", torch.empty(0, 2))

    # -- configuration / state ---------------------------------------------------------------
    _CONFIG = ("k", "domain_aware", "window_level", "aggregation", "topk_k", "pooling", "gwrp_r",
               "bank_reduce", "bank_size", "projection_dim", "scale_sample", "seed", "chunk")

    def _validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.aggregation not in _AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {self.aggregation!r}")
        if self.topk_k < 1:
            raise ValueError(f"topk_k must be >= 1, got {self.topk_k}")
        if self.pooling not in POOL_METHODS:
            raise ValueError(f"pooling must be one of {POOL_METHODS}, got {self.pooling!r}")
        if self.bank_reduce not in _REDUCTIONS:
            raise ValueError(f"bank_reduce must be one of {_REDUCTIONS}, got {self.bank_reduce!r}")
        if self.bank_reduce is not None and (self.bank_size is None or self.bank_size < 1):
            raise ValueError("bank_reduce needs bank_size >= 1")
        if self.scale_sample < 1 or self.chunk < 1:
            raise ValueError("scale_sample and chunk must be >= 1")

    def config(self) -> dict[str, Any]:
        """The constructor arguments (plain Python values)."""
        return {name: getattr(self, name) for name in self._CONFIG}

    def get_extra_state(self) -> dict[str, Any]:
        return {"config": self.config(), "n_fit_clips": self.n_fit_clips}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for name, value in state["config"].items():
            if name not in self._CONFIG:
                raise ValueError(f"unknown KNNScorer setting {name!r} in the state dict")
            setattr(self, name, value)
        self.n_fit_clips = int(state.get("n_fit_clips", 0))
        self._validate()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Buffers are sized by the fitted bank: resize them to the incoming shapes first.
        for name, buf in list(self._buffers.items()):
            key = prefix + name
            if buf is not None and key in state_dict and state_dict[key].shape != buf.shape:
                self._buffers[name] = torch.empty(
                    state_dict[key].shape, dtype=state_dict[key].dtype, device=buf.device
                )
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
        """Turn any accepted input into (items (N, D), clip index per item (N,), n_clips)."""
        if isinstance(embeddings, Tensor):
            if embeddings.ndim == 3:
                if groups is not None:
                    raise ValueError("groups are only used with a flat (sum W, D) tensor")
                c, w, d = embeddings.shape
                if not self.window_level:
                    pooled = pool_batch(embeddings, self.pooling, self.gwrp_r)
                    return _float(pooled), torch.arange(c), c
                clip = torch.arange(c).repeat_interleave(w)
                return _float(embeddings.reshape(c * w, d)), clip, c
            if embeddings.ndim != 2:
                raise ValueError(
                    f"embeddings must be (C, D), (C, W, D) or a list of (W, D) tensors, got shape "
                    f"{tuple(embeddings.shape)}"
                )
            if groups is None:
                if self.window_level:
                    raise ValueError(
                        "window_level scoring needs per-clip windows: pass a list of (W, D) "
                        "tensors, a (C, W, D) tensor, or groups (clip index of each window)"
                    )
                return _float(embeddings), torch.arange(embeddings.shape[0]), embeddings.shape[0]
            g = torch.as_tensor(groups).reshape(-1).long().cpu()
            if g.numel() != embeddings.shape[0]:
                raise ValueError(f"groups has {g.numel()} entries for {embeddings.shape[0]} rows")
            if g.numel() == 0 or int(g.min()) < 0:
                raise ValueError("groups must be non-negative clip indices")
            c = int(g.max()) + 1
            counts = torch.bincount(g, minlength=c)
            if bool((counts == 0).any()):
                raise ValueError(f"groups must cover clips 0..{c - 1}; some clips have no window")
            if self.window_level:
                return _float(embeddings), g, c
            order = torch.argsort(g, stable=True)
            pooled = pool_batch(embeddings[order.to(embeddings.device)], self.pooling,
                                self.gwrp_r, lengths=counts.tolist())
            return _float(pooled), torch.arange(c), c
        clips = list(embeddings)
        if groups is not None:
            raise ValueError("groups are only used with a flat (sum W, D) tensor")
        if not clips:
            raise ValueError("no embeddings given")
        if not self.window_level:
            return _float(pool_batch(clips, self.pooling, self.gwrp_r)), torch.arange(len(clips)), \
                len(clips)
        for i, c in enumerate(clips):
            if c.ndim != 2 or c.shape[0] == 0:
                raise ValueError(f"clip {i}: window embeddings must be a non-empty (W, D) tensor")
        lengths = torch.tensor([c.shape[0] for c in clips])
        clip = torch.arange(len(clips)).repeat_interleave(lengths)
        return _float(torch.cat(clips)), clip, len(clips)

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
        sec = _section_ids(sections, n_clips)
        dom = _domain_ids(domains, n_clips)
        item_sec, item_dom = sec[item_clip], dom[item_clip]
        keep: list[Tensor] = []
        for s in torch.unique(sec).tolist():
            masks = (
                [(item_sec == s) & (item_dom == d) for d in (0, 1)]
                if self.domain_aware else [item_sec == s]
            )
            for mi, mask in enumerate(masks):
                idx = torch.nonzero(mask).reshape(-1)
                if idx.numel() == 0:
                    continue
                if (self.bank_reduce is not None and self.bank_size is not None
                        and idx.numel() > self.bank_size):
                    sub_seed = self.seed + 1000 * s + mi
                    if self.bank_reduce == "random":
                        sub = random_subset(idx.numel(), self.bank_size, seed=sub_seed)
                    else:
                        sub = greedy_coreset(items[idx.to(items.device)], self.bank_size,
                                             self.projection_dim, seed=sub_seed).cpu()
                    idx = torch.sort(idx[sub]).values
                keep.append(idx)
        sel = torch.cat(keep)
        dev = items.device
        self.bank = items[sel.to(dev)].detach().clone()
        self.bank_sections = item_sec[sel].to(dev)
        self.bank_domains = item_dom[sel].to(dev)
        self.bank_clips = item_clip[sel].to(dev)
        self.n_fit_clips = n_clips
        if self.domain_aware:
            self._fit_scales()
        else:
            self.scale_sections = torch.empty(0, dtype=torch.long, device=dev)
            self.scales = torch.empty(0, 2, dtype=self.bank.dtype, device=dev)
        return self

    def _bank_scale(self, mask: Tensor, salt: int) -> float:
        """Mean leave-one-clip-out k-NN distance inside one bank; NaN if it cannot be estimated."""
        entries = self.bank[mask]
        clips = self.bank_clips[mask]
        n = entries.shape[0]
        if torch.unique(clips).numel() < 2:
            return math.nan
        q_idx = torch.arange(n, device=entries.device)
        if n > self.scale_sample:
            q_idx = random_subset(n, self.scale_sample, seed=self.seed + salt).to(entries.device)
        d = knn_distance(entries[q_idx], entries, min(self.k, n), self.chunk,
                         query_groups=clips[q_idx], bank_groups=clips, partial=True)
        scale = float(d.mean())
        return scale if math.isfinite(scale) and scale > 0 else math.nan

    def _fit_scales(self) -> None:
        secs = torch.unique(self.bank_sections)
        scales = torch.ones(secs.numel(), 2, dtype=self.bank.dtype, device=self.bank.device)
        for i, s in enumerate(secs.tolist()):
            sd = [
                self._bank_scale((self.bank_sections == s) & (self.bank_domains == d), 7 * s + d)
                for d in (0, 1)
            ]
            for d in (0, 1):
                val = sd[d] if not math.isnan(sd[d]) else sd[1 - d]
                scales[i, d] = 1.0 if math.isnan(val) else val
        self.scale_sections = secs
        self.scales = scales

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
        sec = _section_ids(sections, n_clips)
        dev = self.bank.device
        items = items.to(device=dev, dtype=self.bank.dtype)
        item_sec = sec[item_clip].to(dev)
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
        return self._aggregate(item_scores, item_clip.to(dev), n_clips)

    def _aggregate(self, item_scores: Tensor, item_clip: Tensor, n_clips: int) -> Tensor:
        if self.aggregation == "mean":
            out = torch.zeros(n_clips, dtype=item_scores.dtype, device=item_scores.device)
            out.index_add_(0, item_clip, item_scores)
            counts = torch.bincount(item_clip, minlength=n_clips).to(item_scores.dtype)
            return out / counts
        if self.aggregation == "max":
            out = torch.full((n_clips,), -math.inf, dtype=item_scores.dtype,
                             device=item_scores.device)
            return out.scatter_reduce(0, item_clip, item_scores, reduce="amax")
        order = torch.argsort(item_clip, stable=True)
        counts = torch.bincount(item_clip, minlength=n_clips).tolist()
        parts = torch.split(item_scores[order], counts)
        return torch.stack([
            torch.topk(p, min(self.topk_k, p.numel())).values.mean() for p in parts
        ])

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
