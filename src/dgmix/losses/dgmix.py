"""The DG-Mix pre-training loss, paper eq. 5 (§3.3; SPEC §4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgmix.losses.terms import (
    VARIANCE_EPS,
    Reduction,
    _lam_column,
    all_gather_with_grad,
    consistency_term,
    covariance_term,
    variance_term,
)

__all__ = ["DGMixLoss", "dgmix_loss"]


def dgmix_loss(
    z: Tensor,
    z_prime: Tensor,
    z_mix: Tensor,
    lam: Tensor | float,
    gamma: float = 25.0,
    mu: float = 25.0,
    nu: float = 1.0,
    consistency_reduction: Reduction = "mean",
    eps: float = VARIANCE_EPS,
) -> dict[str, Tensor]:
    """Eq. 5: gamma * s(Z_lam, Z, Z', lam) + mu * (v(Z) + v(Z')) + nu * (c(Z) + c(Z')).

    Args:
        z, z_prime: expander outputs Z, Z' of the two windows X, X', shape (N, D).
        z_mix: expander output Z_lam of the mixed window X_lam = lam X + (1 - lam) X'.
        lam: mixing coefficients, a scalar or shape (N,).
        gamma, mu, nu: coefficients (paper: 25, 25, 1).
        consistency_reduction: "mean" (default, eq. 1 / D) or "sum" (eq. 1 literally); see
            :func:`dgmix.losses.consistency_term`.
        eps: epsilon of the variance term.

    Returns:
        dict with ``loss`` and the unweighted terms ``consistency``, ``variance`` (v(Z) + v(Z'),
        not halved: eq. 5) and ``covariance`` (c(Z) + c(Z')).
    """
    s = consistency_term(z, z_prime, z_mix, lam, consistency_reduction)
    v = variance_term(z, eps) + variance_term(z_prime, eps)
    c = covariance_term(z) + covariance_term(z_prime)
    loss = gamma * s + mu * v + nu * c
    return {"loss": loss, "consistency": s, "variance": v, "covariance": c}


class DGMixLoss(nn.Module):
    """Module form of :func:`dgmix_loss` (paper eq. 5).

    ``gather=True``: with an initialised ``torch.distributed`` process group, the embeddings and
    the lambdas of every process are gathered (with gradients) before the loss is computed, so
    the variance and covariance terms see the global batch as SPEC §4 requires (see
    :func:`dgmix.losses.all_gather_with_grad`). Every process then computes the same loss.
    """

    def __init__(
        self,
        gamma: float = 25.0,
        mu: float = 25.0,
        nu: float = 1.0,
        consistency_reduction: Reduction = "mean",
        eps: float = VARIANCE_EPS,
        gather: bool = False,
    ) -> None:
        super().__init__()
        if consistency_reduction not in ("mean", "sum"):
            raise ValueError("consistency_reduction must be 'mean' or 'sum', got "
                             f"{consistency_reduction!r}")
        self.gamma, self.mu, self.nu = float(gamma), float(mu), float(nu)
        self.consistency_reduction: Reduction = consistency_reduction
        self.eps = float(eps)
        self.gather = bool(gather)

    def forward(
        self, z: Tensor, z_prime: Tensor, z_mix: Tensor, lam: Tensor | float
    ) -> dict[str, Tensor]:
        if self.gather:
            like = z if z.dtype == torch.float64 else z.float()
            lam_vec = _lam_column(lam, z.shape[0], like).reshape(-1).contiguous()
            z, z_prime, z_mix = (all_gather_with_grad(t) for t in (z, z_prime, z_mix))
            lam = all_gather_with_grad(lam_vec.detach())
        return dgmix_loss(z, z_prime, z_mix, lam, self.gamma, self.mu, self.nu,
                          self.consistency_reduction, self.eps)

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, mu={self.mu}, nu={self.nu}, "
                f"consistency_reduction={self.consistency_reduction!r}, gather={self.gather}")


