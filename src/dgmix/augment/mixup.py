"""Mixup for DG-Mix (paper §3.3-3.4): lambda sampling, input and label mixing. The
pairs (X, X') are chosen by :class:`dgmix.augment.pairs.PairSampler`.

Randomness: lambdas are drawn with a NumPy ``Generator`` (NumPy has a Beta sampler that takes a
generator; ``torch.distributions.Beta`` does not). ``generator`` may be a
``numpy.random.Generator`` (used directly), a ``torch.Generator`` (one 63-bit seed is drawn
from it to seed a fresh NumPy generator, so the torch generator's state decides the result and
advances), or ``None`` (the seed is drawn from torch's global RNG, so ``torch.manual_seed``
makes runs reproducible). Pair samplers are deterministic functions of (seed, epoch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["mix", "mix_labels", "sample_lambda"]


def _numpy_rng(generator: np.random.Generator | torch.Generator | None) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None or isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    raise TypeError("generator must be a numpy.random.Generator, a torch.Generator or None, "
                    f"got {type(generator).__name__}")


def sample_lambda(n: int, alpha: float = 0.5, generator: np.random.Generator | torch.Generator | None = None,
                  beta: float | None = None, device: torch.device | str | None = None) -> Tensor:
    """Draw mixing coefficients lambda ~ Beta(alpha, beta) (paper §3.3: alpha = beta = 0.5).

    Returns a float32 tensor of shape (n,): one lambda per pair (the paper does not say whether
    a batch shares one; per pair is our reading). ``beta`` defaults to ``alpha``. See the module
    docstring for ``generator``.
    """
    if n < 1:
        raise ValueError(f"sample_lambda: n must be >= 1, got {n}")
    beta = alpha if beta is None else beta
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"sample_lambda: Beta parameters must be > 0, got {alpha}, {beta}")
    return torch.as_tensor(_numpy_rng(generator).beta(alpha, beta, size=n), dtype=torch.float32, device=device)


def _broadcast_lam(lam: Tensor | float, like: Tensor) -> Tensor:
    lam_t = torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    if lam_t.ndim == 0:
        return lam_t
    n = like.shape[0]
    if lam_t.ndim == 1 and lam_t.shape[0] == n:
        return lam_t.reshape(n, *([1] * (like.ndim - 1)))
    raise ValueError(f"lam must be a scalar or have shape ({n},), got {tuple(lam_t.shape)}")


def mix(x: Tensor, x_prime: Tensor, lam: Tensor | float) -> Tensor:
    """X_lam = lam * X + (1 - lam) * X', with a per-sample ``lam`` of shape (N,) broadcast over
    the trailing dimensions (or a scalar)."""
    if x.shape != x_prime.shape:
        raise ValueError(f"mix: x and x_prime must have the same shape, got {tuple(x.shape)} "
                         f"and {tuple(x_prime.shape)}")
    lam_b = _broadcast_lam(lam, x)
    # torch.lerp(X', X, lam) = X' + lam (X - X'): the same value in one fused pass (3x faster than
    # the three-temporary form on CPU for a 1024-window batch; exact at lam = 0 and 1).
    return torch.lerp(x_prime, x, lam_b)


def mix_labels(labels: Tensor, labels_prime: Tensor, lam: Tensor | float, n_classes: int,
               check: bool = True) -> Tensor:
    """Mixed one-hot targets lam * onehot(labels) + (1 - lam) * onehot(labels'), (N, n_classes)
    float32 (paper §3.4: "the mixed section ID"). ``check``: test on the host that every label
    lies in [0, n_classes); a training step whose labels come from its own class table skips it,
    so that it needs no host synchronisation (CUDA graphs, :mod:`dgmix.training.step_graph`)."""
    if labels.ndim != 1 or labels.shape != labels_prime.shape:
        raise ValueError(f"mix_labels: labels must be two (N,) tensors, got "
                         f"{tuple(labels.shape)} and {tuple(labels_prime.shape)}")
    labels, labels_prime = labels.long(), labels_prime.long()
    if check and labels.numel() and (min(labels.min(), labels_prime.min()) < 0
                           or max(labels.max(), labels_prime.max()) >= n_classes):
        raise ValueError(f"mix_labels: labels must lie in [0, {n_classes})")
    a = torch.nn.functional.one_hot(labels, n_classes).float()
    b = torch.nn.functional.one_hot(labels_prime, n_classes).float()
    return mix(a, b, lam)
