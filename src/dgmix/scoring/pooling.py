"""Pooling of window embeddings into one clip embedding (paper §3.5, SPEC §6).

The paper uses the mean of the encoder outputs of a clip's windows ("the mean embedding vector from
the 10-s audio recording"), which is ``method="mean"``. The other options are extensions:

* ``"max"``: per-dimension maximum over windows;
* ``"gwrp"``: global weighted rank pooling (Kolesnikov & Lampert, ECCV 2016): per dimension, sort
  the window values in descending order and take the weighted mean with weights ``r**i``
  (i = 0, 1, ...) normalised to sum to 1; ``r = 1`` is the mean, ``r = 0`` the max;
* ``"mean+max"``: concatenation ``[mean, max]`` (output dimension 2·D).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

PoolMethod = Literal["mean", "max", "gwrp", "mean+max"]
POOL_METHODS: tuple[str, ...] = ("mean", "max", "gwrp", "mean+max")

__all__ = ["POOL_METHODS", "PoolMethod", "gwrp_weights", "pool", "pool_batch", "pooled_dim"]


def pooled_dim(dim: int, method: PoolMethod = "mean") -> int:
    """Dimension of the pooled embedding for window embeddings of dimension ``dim``."""
    _check_method(method)
    return 2 * dim if method == "mean+max" else dim


def _check_method(method: str) -> None:
    if method not in POOL_METHODS:
        raise ValueError(f"unknown pooling method {method!r}; choose one of {POOL_METHODS}")


def gwrp_weights(n: int, r: float, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """Normalised GWRP weights ``r**i / sum_j r**j`` for ranks i = 0..n-1."""
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"gwrp_r must be in [0, 1], got {r}")
    if n < 1:
        raise ValueError("GWRP needs at least one window")
    w = torch.full((n,), float(r), dtype=torch.float64, device=device)
    w = torch.pow(w, torch.arange(n, dtype=torch.float64, device=device))  # 0**0 == 1
    return (w / w.sum()).to(dtype)


def pool(windows: Tensor, method: PoolMethod = "mean", gwrp_r: float = 0.9) -> Tensor:
    """Pool one clip's window embeddings ``(W, D)`` into a clip embedding ``(D,)``.

    ``(2·D,)`` for ``"mean+max"``. Raises ``ValueError`` for a clip with no window or a tensor
    that is not 2-D.
    """
    _check_method(method)
    if windows.ndim != 2:
        raise ValueError(f"window embeddings must be (W, D), got shape {tuple(windows.shape)}")
    if windows.shape[0] == 0:
        raise ValueError("cannot pool a clip with no windows")
    if method == "mean":
        return windows.mean(dim=0)
    if method == "max":
        return windows.amax(dim=0)
    if method == "mean+max":
        return torch.cat([windows.mean(dim=0), windows.amax(dim=0)])
    srt = torch.sort(windows, dim=0, descending=True).values
    w = gwrp_weights(windows.shape[0], gwrp_r, dtype=windows.dtype, device=windows.device)
    return (w[:, None] * srt).sum(dim=0)


def pool_batch(
    windows: Tensor | Sequence[Tensor],
    method: PoolMethod = "mean",
    gwrp_r: float = 0.9,
    lengths: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Pool many clips at once; returns ``(C, D)`` (or ``(C, 2·D)`` for ``"mean+max"``).

    ``windows`` is either a list of ``(W_i, D)`` tensors (ragged clips), a ``(C, W, D)`` tensor
    (equal window counts), or a flat ``(sum W_i, D)`` tensor together with ``lengths`` (W_i per
    clip, in order).
    """
    _check_method(method)
    if isinstance(windows, Tensor):
        if lengths is not None:
            if windows.ndim != 2:
                raise ValueError("with lengths, windows must be a flat (sum W, D) tensor")
            ls = [int(x) for x in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
            if sum(ls) != windows.shape[0]:
                raise ValueError(
                    f"lengths sum to {sum(ls)} but there are {windows.shape[0]} windows"
                )
            clips: Sequence[Tensor] = torch.split(windows, ls)
        elif windows.ndim == 3:
            if windows.shape[1] == 0:
                raise ValueError("cannot pool clips with no windows")
            if method == "mean":
                return windows.mean(dim=1)
            if method == "max":
                return windows.amax(dim=1)
            if method == "mean+max":
                return torch.cat([windows.mean(dim=1), windows.amax(dim=1)], dim=1)
            srt = torch.sort(windows, dim=1, descending=True).values
            w = gwrp_weights(windows.shape[1], gwrp_r, dtype=windows.dtype, device=windows.device)
            return (w[None, :, None] * srt).sum(dim=1)
        else:
            raise ValueError(
                "windows must be a list of (W, D) tensors, a (C, W, D) tensor, or a flat "
                f"(sum W, D) tensor with lengths; got shape {tuple(windows.shape)}"
            )
    else:
        clips = list(windows)
    if len(clips) == 0:
        raise ValueError("no clips to pool")
    return torch.stack([pool(c, method, gwrp_r) for c in clips])
