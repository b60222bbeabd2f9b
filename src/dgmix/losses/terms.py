"""The loss terms of DG-Mix and VICReg (paper §3.3, eqs. 1-4).

Every term is a function of (N, D) embedding batches returning a scalar tensor; the terms
are computed in float32 even when the embeddings are half / bfloat16 (mixed precision),
because variances and covariances lose too much precision otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VARIANCE_EPS", "consistency_term", "covariance_term", "invariance_term", "variance_term"]

#: epsilon inside the square root of the variance term (VICReg's code uses 1e-4).
VARIANCE_EPS = 1e-4


def _as_batch(z: Tensor, name: str = "z") -> Tensor:
    """Check that ``z`` is an (N, D) batch with N >= 2 and return it as float32 (or float64)."""
    if z.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (batch, dim) tensor, got shape {tuple(z.shape)}")
    if z.shape[0] < 2:
        raise ValueError(f"{name}: variance/covariance needs at least 2 samples in the batch, got {z.shape[0]}")
    return z if z.dtype == torch.float64 else z.float()


def _same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def variance_term(z: Tensor, eps: float = VARIANCE_EPS) -> Tensor:
    """Variance hinge v(Z), paper eq. 2: mean over dimensions j of max(0, 1 - sqrt(Var(z^j) + eps)).

    Var is the unbiased (N - 1) variance over the batch and ``eps`` = 1e-4, as in VICReg's code
    (the paper's eq. 2 omits eps). A collapsed (constant) batch gives exactly 1 - sqrt(eps).
    """
    z = _as_batch(z)
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)
    return F.relu(1.0 - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """Covariance penalty c(Z), paper eqs. 3-4.

    C(Z) = 1/(N-1) sum_i (z_i - mean)(z_i - mean)^T (eq. 3) and c(Z) = sum of the squared
    off-diagonal entries of C(Z), divided by D (eq. 4).
    """
    z = _as_batch(z)
    n, d = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    cov = zc.T @ zc / (n - 1)
    off_diagonal = cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()
    return off_diagonal / d


def invariance_term(z_a: Tensor, z_b: Tensor) -> Tensor:
    """VICReg invariance: mean squared error over batch and dimensions (VICReg's ``F.mse_loss``)."""
    za, zb = _as_batch(z_a, "z_a"), _as_batch(z_b, "z_b")
    _same_shape("z_a", za, "z_b", zb)
    return F.mse_loss(za, zb)


def _lam_column(lam: Tensor | float, n: int, like: Tensor) -> Tensor:
    """Mixing coefficients as an (N, 1) column (accepts a float, a 0-d, (N,) or (N, 1) tensor)."""
    lam_t = torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    if lam_t.ndim == 0:
        return lam_t.reshape(1, 1).expand(n, 1)
    if lam_t.shape == (n,) or lam_t.shape == (n, 1):
        return lam_t.reshape(n, 1)
    raise ValueError(f"lam must be a scalar or have shape ({n},), got {tuple(lam_t.shape)}")


def consistency_term(z: Tensor, z_prime: Tensor, z_mix: Tensor, lam: Tensor | float) -> Tensor:
    """DG-Mix consistency (geometric constraint) s, paper eq. 1, as a mean over batch and dimensions:

    s = 1/(N D) sum_i || z_mix,i - (lam_i z_i + (1 - lam_i) z'_i) ||^2,

    i.e. eq. 1 as printed (summed over dimensions, mean over the batch) divided by D. This is an
    interpretation: DG-Mix takes gamma, mu, nu = 25, 25, 1 from VICReg, whose paper writes its
    invariance as a squared norm summed over dimensions but whose reference code averages over
    every element (``F.mse_loss``) -- the coefficients were tuned with the averaged form. With
    D = 1280 the literal sum would weight this term 1280 times more.

    Argument order follows ``DGMixLoss`` (z, z', z_mix, lam), not eq. 1's s(Z_lam, Z, Z', lam).
    ``lam`` is a scalar or one coefficient per sample, shape (N,). Unlike the variance and
    covariance terms, any batch size N >= 1 is accepted.
    """
    if z.ndim != 2:
        raise ValueError(f"z must be a 2-D (batch, dim) tensor, got shape {tuple(z.shape)}")
    _same_shape("z", z, "z_prime", z_prime)
    _same_shape("z", z, "z_mix", z_mix)
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    z, z_prime, z_mix = z.to(dtype), z_prime.to(dtype), z_mix.to(dtype)
    lam_col = _lam_column(lam, z.shape[0], z)
    target = lam_col * z + (1.0 - lam_col) * z_prime
    per_sample = (z_mix - target).pow(2).sum(dim=1)
    return per_sample.mean() / z.shape[1]
