"""The VICReg loss (Bardes et al., 2022), used for the VICReg + SpecAugment ablation (paper §4,
Table 3; SPEC §4)."""

from __future__ import annotations

from torch import Tensor, nn

from dgmix.losses.terms import (
    VARIANCE_EPS,
    covariance_term,
    invariance_term,
    variance_term,
)

__all__ = ["VICRegLoss", "vicreg_loss"]


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    sim: float = 25.0,
    std: float = 25.0,
    cov: float = 1.0,
    halve_variance: bool = False,
    eps: float = VARIANCE_EPS,
) -> dict[str, Tensor]:
    """sim * MSE(Z_a, Z_b) + std * (v(Z_a) + v(Z_b)) + cov * (c(Z_a) + c(Z_b)).

    The variance is v(Z_a) + v(Z_b) as in DG-Mix's eq. 5 (so the two ablations share the same
    v and c terms); VICReg's reference code uses (v(Z_a) + v(Z_b)) / 2 -- ``halve_variance=True``.
    The returned ``variance`` is the value that is multiplied by ``std`` (halved or not).
    """
    inv = invariance_term(z_a, z_b)
    v = variance_term(z_a, eps) + variance_term(z_b, eps)
    if halve_variance:
        v = v / 2
    c = covariance_term(z_a) + covariance_term(z_b)
    loss = sim * inv + std * v + cov * c
    return {"loss": loss, "invariance": inv, "variance": v, "covariance": c}


class VICRegLoss(nn.Module):
    """Module form of :func:`vicreg_loss`; under DDP pass the global batch, as for
    :class:`dgmix.losses.DGMixLoss`."""

    def __init__(
        self,
        sim: float = 25.0,
        std: float = 25.0,
        cov: float = 1.0,
        halve_variance: bool = False,
        eps: float = VARIANCE_EPS,
    ) -> None:
        super().__init__()
        self.sim, self.std, self.cov = float(sim), float(std), float(cov)
        self.halve_variance = bool(halve_variance)
        self.eps = float(eps)

    def forward(self, z_a: Tensor, z_b: Tensor) -> dict[str, Tensor]:
        return vicreg_loss(z_a, z_b, self.sim, self.std, self.cov, self.halve_variance, self.eps)

    def extra_repr(self) -> str:
        return (f"sim={self.sim}, std={self.std}, cov={self.cov}, "
                f"halve_variance={self.halve_variance}")
