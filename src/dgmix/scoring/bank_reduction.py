"""Which training entries go into a k-NN bank, and bank reduction (an extension; the paper keeps all).

:func:`select_bank` picks the bank rows per section (per section *and domain* for domain-aware
banks, so the small target bank is not thinned by the source bank's size), keeping at most
``bank_size`` of each with ``"random"`` (:func:`random_subset`) or ``"coreset"``
(:func:`greedy_coreset`, the greedy k-center selection of PatchCore, Roth et al., CVPR 2022,
optionally computed in a ``projection_dim``-dimensional Gaussian random projection; the kept
entries are the original embeddings).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dgmix.scoring.distance import as_float

BankReduce = Literal["random", "coreset"]
REDUCTIONS = (None, "random", "coreset")

__all__ = ["REDUCTIONS", "BankReduce", "greedy_coreset", "random_subset", "select_bank"]


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
    feats = as_float(x)
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


def select_bank(
    items: Tensor,
    item_sec: Tensor,
    item_dom: Tensor,
    per_domain: bool,
    reduce: BankReduce | None = None,
    size: int | None = None,
    projection_dim: int | None = None,
    seed: int = 0,
) -> Tensor:
    """Indices of the ``items`` ``(N, D)`` kept in the bank, grouped by section (then domain).

    ``item_sec`` / ``item_dom``: section id and domain (0 source, 1 target) of every item (CPU).
    One bank per section, or per section and domain with ``per_domain``; each bank keeps at most
    ``size`` entries when ``reduce`` is set (seeded per bank), in their original order.
    """
    keep: list[Tensor] = []
    for s in torch.unique(item_sec).tolist():
        masks = (
            [(item_sec == s) & (item_dom == d) for d in (0, 1)]
            if per_domain else [item_sec == s]
        )
        for mi, mask in enumerate(masks):
            idx = torch.nonzero(mask).reshape(-1)
            if idx.numel() == 0:
                continue
            if reduce is not None and size is not None and idx.numel() > size:
                sub_seed = seed + 1000 * s + mi
                if reduce == "random":
                    sub = random_subset(idx.numel(), size, seed=sub_seed)
                else:
                    sub = greedy_coreset(items[idx.to(items.device)], size,
                                         projection_dim, seed=sub_seed).cpu()
                idx = torch.sort(idx[sub]).values
            keep.append(idx)
    return torch.cat(keep)
