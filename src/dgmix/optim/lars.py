"""LARS optimizer (You et al., 2017) as used by DG-Mix pre-training (paper §3.3).

Follows the variant of VICReg's code (re-implemented here): for a parameter p with gradient g,

    g <- g + weight_decay * p                          (unless p is excluded from weight decay)
    g <- g * eta * ||p|| / ||g||   if ||p|| > 0 and ||g|| > 0   (unless excluded from adaptation)
    m <- momentum * m + g   (m = g at the first step)
    p <- p - lr * m

Biases and normalisation parameters (every parameter with ``ndim == 1``) are excluded from weight
decay and from the trust-ratio adaptation (``exclude_bias_and_norm``, the default).

Graph-safe: a step reads no tensor value on the host and branches only on Python settings and on
whether the momentum buffer exists yet (created by the first step), so from the second step on it
can be captured in a CUDA graph. A group's ``lr`` may be a number or a 0-d tensor on the
parameters' device: :mod:`dgmix.training.step_graph` fills one before every replay, so the
schedule is not baked into the graph. Both forms compute ``p - m * lr`` with the same float32
operations, so they give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

__all__ = ["LARS", "exclude_bias_and_norm", "param_groups"]


def exclude_bias_and_norm(p: Tensor) -> bool:
    """True for biases and normalisation weights (1-D parameters)."""
    return p.ndim <= 1


class LARS(Optimizer):
    """LARS with VICReg's filters.

    Args:
        params: parameters or parameter groups (groups may override every option below).
        lr: learning rate (paper: 0.8 = 0.2 * batch / 256 with batch 1024); a group's ``lr`` may
            later be replaced by a 0-d tensor (see the module docstring).
        weight_decay: L2 coefficient (paper: 1e-4).
        momentum: heavy-ball momentum (0.9).
        eta: trust coefficient (0.001).
        exclude_bias_and_norm: if True, 1-D parameters get neither weight decay nor trust-ratio scaling.
    """

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                 eta: float = 0.001, exclude_bias_and_norm: bool = True) -> None:
        if lr < 0 or weight_decay < 0 or momentum < 0 or eta <= 0:
            raise ValueError(f"LARS: invalid lr={lr}, weight_decay={weight_decay}, momentum={momentum} or eta={eta}")
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "eta": eta,
                    "exclude_bias_and_norm": exclude_bias_and_norm}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                adapt = not (group["exclude_bias_and_norm"] and exclude_bias_and_norm(p))
                if adapt and group["weight_decay"]:
                    dp = dp.add(p, alpha=group["weight_decay"])
                if adapt:
                    p_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(dp)
                    one = torch.ones_like(p_norm)
                    q = torch.where(p_norm > 0, torch.where(d_norm > 0, group["eta"] * p_norm / d_norm, one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = dp.clone()
                else:
                    state["mu"].mul_(group["momentum"]).add_(dp)
                p.sub_(state["mu"].mul(group["lr"]))  # lr: a number or a 0-d device tensor
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: weights (ndim > 1) with ``weight_decay``, and biases / norm
    parameters (ndim <= 1) with no weight decay. Works with LARS, AdamW, SGD (for LARS the
    second group is also excluded from adaptation by LARS's own filter)."""
    decay: list[Tensor] = []
    no_decay: list[Tensor] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if exclude_bias_and_norm(p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
