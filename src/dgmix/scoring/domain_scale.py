"""Domain-aware k-NN banks (an extension, not in the paper): the scale of each domain's bank.

With ``domain_aware`` a section has a source and a target bank, and the distance to each is
divided by that bank's scale: the mean leave-one-clip-out k-NN distance inside it, i.e. how far
apart normal training embeddings of that domain usually are. This stops the 10 target clips per
section from being swamped by the 990 source clips' density. A bank whose scale cannot be
estimated (one clip, or all points identical, so the scale is 0) uses the other domain's scale,
and 1.0 when neither has one. With window-level banks the scale is computed on windows, leaving
out every window of the query's own clip, from at most ``scale_sample`` (seeded random) query
windows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgmix.scoring.bank_reduction import random_subset
from dgmix.scoring.distance import knn_distance

__all__ = ["bank_scale", "domain_scales"]


def bank_scale(entries: Tensor, clips: Tensor, k: int, chunk: int, scale_sample: int,
               seed: int) -> float:
    """Mean leave-one-clip-out k-NN distance inside one bank; NaN if it cannot be estimated.

    ``entries`` ``(N, D)`` are the bank rows, ``clips`` ``(N,)`` the training clip of each row.
    """
    n = entries.shape[0]
    if torch.unique(clips).numel() < 2:
        return math.nan
    q_idx = torch.arange(n, device=entries.device)
    if n > scale_sample:
        q_idx = random_subset(n, scale_sample, seed=seed).to(entries.device)
    d = knn_distance(entries[q_idx], entries, min(k, n), chunk,
                     query_groups=clips[q_idx], bank_groups=clips, partial=True)
    scale = float(d.mean())
    return scale if math.isfinite(scale) and scale > 0 else math.nan


def domain_scales(bank: Tensor, bank_sections: Tensor, bank_domains: Tensor, bank_clips: Tensor,
                  k: int, chunk: int, scale_sample: int, seed: int) -> tuple[Tensor, Tensor]:
    """(sections ``(S,)``, scales ``(S, 2)``): the source (column 0) and target (column 1) bank
    scale of every section of the bank, with the fallbacks of the module docstring."""
    secs = torch.unique(bank_sections)
    scales = torch.ones(secs.numel(), 2, dtype=bank.dtype, device=bank.device)
    for i, s in enumerate(secs.tolist()):
        sd = []
        for d in (0, 1):
            mask = (bank_sections == s) & (bank_domains == d)
            sd.append(bank_scale(bank[mask], bank_clips[mask], k, chunk, scale_sample,
                                 seed + 7 * s + d))
        for d in (0, 1):
            val = sd[d] if not math.isnan(sd[d]) else sd[1 - d]
            scales[i, d] = 1.0 if math.isnan(val) else val
    return secs, scales
