"""The paper's k-NN distance (paper §3.5, SPEC §6): mean Euclidean distance to the k nearest bank rows.

With ``k = 1`` this is the paper's anomaly score: the distance from a test embedding to the nearest
training embedding. :class:`dgmix.scoring.knn.KNNScorer` calls it once per section (and domain) bank.

Distances use ``||a||² + ||b||² − 2 a·b`` on embeddings centred on the bank mean (which leaves the
distances unchanged and reduces cancellation error), clamped at 0 before the square root. They are
computed in blocks of ``chunk`` queries × ``bank_chunk`` bank entries (4096 × 8192 × 4 bytes =
128 MB at most).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["as_float", "knn_distance"]


def as_float(x: Tensor) -> Tensor:
    """``x`` as a float32-or-wider tensor (integers and float16/bfloat16 become float32)."""
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
    dtype = torch.promote_types(as_float(queries).dtype, as_float(bank).dtype)
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
