"""The DG-Mix pre-training loss, paper eq. 5 (§3.3)."""

from __future__ import annotations

from torch import Tensor, nn

from dgmix.losses.terms import VARIANCE_EPS, consistency_term, covariance_term, variance_term

__all__ = ["DGMixLoss", "dgmix_loss"]


def dgmix_loss(
    z: Tensor, z_prime: Tensor, z_mix: Tensor, lam: Tensor | float, gamma: float = 25.0, mu: float = 25.0,
    nu: float = 1.0, eps: float = VARIANCE_EPS,
) -> dict[str, Tensor]:
    """Eq. 5: gamma * s(Z_lam, Z, Z', lam) + mu * (v(Z) + v(Z')) + nu * (c(Z) + c(Z')).

    Args:
        z, z_prime: expander outputs Z, Z' of the two windows X, X', shape (N, D).
        z_mix: expander output Z_lam of the mixed window X_lam = lam X + (1 - lam) X'.
        lam: mixing coefficients, a scalar or shape (N,).
        gamma, mu, nu: coefficients (paper: 25, 25, 1).
        eps: epsilon of the variance term.

    Returns:
        dict with ``loss`` and the unweighted terms ``consistency``, ``variance`` (v(Z) + v(Z'),
        not halved: eq. 5) and ``covariance`` (c(Z) + c(Z')).
    """
    s = consistency_term(z, z_prime, z_mix, lam)  # eq. 1 / D, see there
    v = variance_term(z, eps) + variance_term(z_prime, eps)
    c = covariance_term(z) + covariance_term(z_prime)
    return {"loss": gamma * s + mu * v + nu * c, "consistency": s, "variance": v, "covariance": c}


class DGMixLoss(nn.Module):
    """Module form of :func:`dgmix_loss` (paper eq. 5).

    Under DDP the caller passes the *global* batch (every rank's embeddings gathered with
    gradients by :func:`dgmix.training.distributed.gather_with_grad`), so that the variance and
    covariance terms see the global batch (as with one device).
    """

    def __init__(self, gamma: float = 25.0, mu: float = 25.0, nu: float = 1.0, eps: float = VARIANCE_EPS) -> None:
        super().__init__()
        self.gamma, self.mu, self.nu, self.eps = float(gamma), float(mu), float(nu), float(eps)

    def forward(self, z: Tensor, z_prime: Tensor, z_mix: Tensor, lam: Tensor | float) -> dict[str, Tensor]:
        return dgmix_loss(z, z_prime, z_mix, lam, self.gamma, self.mu, self.nu, self.eps)
