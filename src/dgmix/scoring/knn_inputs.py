"""Input handling of :class:`dgmix.scoring.knn.KNNScorer`: embeddings and labels to flat tensors.

:func:`clip_items` turns any accepted embedding input into bank/query items -- pooled clip
embeddings (the paper's mean of window embeddings, or another :mod:`dgmix.scoring.pooling`
method), or the windows themselves for window-level k-NN -- with the clip index of each item.
:func:`section_ids` and :func:`domain_ids` parse one section / domain label per clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dgmix.scoring.distance import as_float
from dgmix.scoring.pooling import PoolMethod, pool_batch

__all__ = ["clip_items", "domain_ids", "section_ids"]


def section_ids(sections: Any, n: int, what: str = "sections") -> Tensor:
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


def domain_ids(domains: Any, n: int) -> Tensor:
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


def clip_items(
    embeddings: Tensor | Sequence[Tensor],
    groups: Tensor | Sequence[int] | None,
    window_level: bool,
    pooling: PoolMethod = "mean",
    gwrp_r: float = 0.9,
) -> tuple[Tensor, Tensor, int]:
    """Turn any accepted input into (items (N, D), clip index per item (N,), n_clips).

    ``embeddings`` is a ``(C, D)`` tensor of clip embeddings, a ``(C, W, D)`` tensor or a list of
    ``(W_i, D)`` tensors of window embeddings (pooled with ``pooling`` unless ``window_level``),
    or a flat ``(sum W, D)`` window tensor with ``groups`` (clip index per window).
    """
    if isinstance(embeddings, Tensor):
        if embeddings.ndim == 3:
            if groups is not None:
                raise ValueError("groups are only used with a flat (sum W, D) tensor")
            c, w, d = embeddings.shape
            if not window_level:
                pooled = pool_batch(embeddings, pooling, gwrp_r)
                return as_float(pooled), torch.arange(c), c
            clip = torch.arange(c).repeat_interleave(w)
            return as_float(embeddings.reshape(c * w, d)), clip, c
        if embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must be (C, D), (C, W, D) or a list of (W, D) tensors, got shape "
                f"{tuple(embeddings.shape)}"
            )
        if groups is None:
            if window_level:
                raise ValueError(
                    "window_level scoring needs per-clip windows: pass a list of (W, D) "
                    "tensors, a (C, W, D) tensor, or groups (clip index of each window)"
                )
            return as_float(embeddings), torch.arange(embeddings.shape[0]), embeddings.shape[0]
        g = torch.as_tensor(groups).reshape(-1).long().cpu()
        if g.numel() != embeddings.shape[0]:
            raise ValueError(f"groups has {g.numel()} entries for {embeddings.shape[0]} rows")
        if g.numel() == 0 or int(g.min()) < 0:
            raise ValueError("groups must be non-negative clip indices")
        c = int(g.max()) + 1
        counts = torch.bincount(g, minlength=c)
        if bool((counts == 0).any()):
            raise ValueError(f"groups must cover clips 0..{c - 1}; some clips have no window")
        if window_level:
            return as_float(embeddings), g, c
        order = torch.argsort(g, stable=True)
        pooled = pool_batch(embeddings[order.to(embeddings.device)], pooling,
                            gwrp_r, lengths=counts.tolist())
        return as_float(pooled), torch.arange(c), c
    clips = list(embeddings)
    if groups is not None:
        raise ValueError("groups are only used with a flat (sum W, D) tensor")
    if not clips:
        raise ValueError("no embeddings given")
    if not window_level:
        return as_float(pool_batch(clips, pooling, gwrp_r)), torch.arange(len(clips)), \
            len(clips)
    for i, c in enumerate(clips):
        if c.ndim != 2 or c.shape[0] == 0:
            raise ValueError(f"clip {i}: window embeddings must be a non-empty (W, D) tensor")
    lengths = torch.tensor([c.shape[0] for c in clips])
    clip = torch.arange(len(clips)).repeat_interleave(lengths)
    return as_float(torch.cat(clips)), clip, len(clips)
