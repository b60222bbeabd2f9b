"""The VICReg loss (Bardes et al., 2022), used for the VICReg + SpecAugment ablation (paper §4,
Table 3)."""

from __future__ import annotations

from torch import Tensor, nn

from dgmix.losses.terms import VARIANCE_EPS, covariance_term, invariance_term, variance_term

__all__ = ["VICRegLoss", "vicreg_loss"]


def vicreg_loss(
    z_a: Tensor, z_b: Tensor, sim: float = 25.0, std: float = 25.0, cov: float = 1.0, eps: float = VARIANCE_EPS,
) -> dict[str, Tensor]:
    """sim * MSE(Z_a, Z_b) + std * (v(Z_a) + v(Z_b)) + cov * (c(Z_a) + c(Z_b)).

    The variance is v(Z_a) + v(Z_b) as in DG-Mix's eq. 5 (so the two ablations share the same
    v and c terms); VICReg's reference code uses (v(Z_a) + v(Z_b)) / 2.
    """
    inv = invariance_term(z_a, z_b)
    v = variance_term(z_a, eps) + variance_term(z_b, eps)
    c = covariance_term(z_a) + covariance_term(z_b)
    return {"loss": sim * inv + std * v + cov * c, "invariance": inv, "variance": v, "covariance": c}


class VICRegLoss(nn.Module):
    """Module form of :func:`vicreg_loss`; under DDP pass the global batch, as for
    :class:`dgmix.losses.DGMixLoss`."""

    def __init__(self, sim: float = 25.0, std: float = 25.0, cov: float = 1.0, eps: float = VARIANCE_EPS) -> None:
        super().__init__()
        self.sim, self.std, self.cov, self.eps = float(sim), float(std), float(cov), float(eps)

    def forward(self, z_a: Tensor, z_b: Tensor) -> dict[str, Tensor]:
        return vicreg_loss(z_a, z_b, self.sim, self.std, self.cov, self.eps)
