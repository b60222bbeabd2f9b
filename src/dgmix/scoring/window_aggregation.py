"""Window-level k-NN (an extension; the paper scores mean-pooled clip embeddings).

With a window-level bank every test window gets its own k-NN distance, and a clip's score
aggregates its windows' scores: ``"mean"``, ``"max"`` or ``"topk-mean"`` (mean of the ``topk_k``
largest).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Aggregation = Literal["mean", "max", "topk-mean"]
AGGREGATIONS = ("mean", "max", "topk-mean")

__all__ = ["AGGREGATIONS", "Aggregation", "aggregate"]


def aggregate(item_scores: Tensor, item_clip: Tensor, n_clips: int,
              aggregation: Aggregation = "mean", topk_k: int = 3) -> Tensor:
    """Per-clip scores ``(n_clips,)`` from per-window scores and each window's clip index."""
    if aggregation == "mean":
        out = torch.zeros(n_clips, dtype=item_scores.dtype, device=item_scores.device)
        out.index_add_(0, item_clip, item_scores)
        counts = torch.bincount(item_clip, minlength=n_clips).to(item_scores.dtype)
        return out / counts
    if aggregation == "max":
        out = torch.full((n_clips,), -math.inf, dtype=item_scores.dtype,
                         device=item_scores.device)
        return out.scatter_reduce(0, item_clip, item_scores, reduce="amax")
    order = torch.argsort(item_clip, stable=True)
    counts = torch.bincount(item_clip, minlength=n_clips).tolist()
    parts = torch.split(item_scores[order], counts)
    return torch.stack([
        torch.topk(p, min(topk_k, p.numel())).values.mean() for p in parts
    ])
