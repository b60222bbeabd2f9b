"""Mixup for DG-Mix (paper §3.3-3.4; SPEC §4-5): lambda sampling, input and label mixing, and
the pair samplers that pick X and X'.

Randomness: lambdas are drawn with a NumPy ``Generator`` (NumPy has a Beta sampler that takes a
generator; ``torch.distributions.Beta`` does not). ``generator`` may be a
``numpy.random.Generator`` (used directly), a ``torch.Generator`` (one 63-bit seed is drawn
from it to seed a fresh NumPy generator, so the torch generator's state decides the result and
advances), or ``None`` (the seed is drawn from torch's global RNG, so ``torch.manual_seed``
makes runs reproducible). Pair samplers are deterministic functions of (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FinetunePairSampler",
    "PairSampler",
    "mix",
    "mix_labels",
    "sample_lambda",
]


def _numpy_rng(generator: np.random.Generator | torch.Generator | None) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None or isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    raise TypeError("generator must be a numpy.random.Generator, a torch.Generator or None, "
                    f"got {type(generator).__name__}")


def sample_lambda(
    n: int,
    alpha: float = 0.5,
    per_sample: bool = True,
    generator: np.random.Generator | torch.Generator | None = None,
    beta: float | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw mixing coefficients lambda ~ Beta(alpha, beta) (paper §3.3: alpha = beta = 0.5).

    Returns a float32 tensor of shape (n,): one lambda per pair (``per_sample=True``) or one
    lambda shared by the whole batch, repeated n times (``per_sample=False``; the paper does not
    say which -- per pair is our default). ``beta`` defaults to ``alpha``. See the module
    docstring for ``generator``.
    """
    if n < 1:
        raise ValueError(f"sample_lambda: n must be >= 1, got {n}")
    beta = alpha if beta is None else beta
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"sample_lambda: Beta parameters must be > 0, got {alpha}, {beta}")
    rng = _numpy_rng(generator)
    draws = rng.beta(alpha, beta, size=n if per_sample else 1)
    if not per_sample:
        draws = np.repeat(draws, n)
    return torch.as_tensor(draws, dtype=torch.float32, device=device)


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


def mix_labels(labels: Tensor, labels_prime: Tensor, lam: Tensor | float, n_classes: int) -> Tensor:
    """Mixed one-hot targets lam * onehot(labels) + (1 - lam) * onehot(labels'), (N, n_classes)
    float32 (paper §3.4: "the mixed section ID")."""
    if labels.ndim != 1 or labels.shape != labels_prime.shape:
        raise ValueError(f"mix_labels: labels must be two (N,) tensors, got "
                         f"{tuple(labels.shape)} and {tuple(labels_prime.shape)}")
    labels, labels_prime = labels.long(), labels_prime.long()
    if labels.numel() and (min(labels.min(), labels_prime.min()) < 0
                           or max(labels.max(), labels_prime.max()) >= n_classes):
        raise ValueError(f"mix_labels: labels must lie in [0, {n_classes})")
    a = torch.nn.functional.one_hot(labels, n_classes).float()
    b = torch.nn.functional.one_hot(labels_prime, n_classes).float()
    return mix(a, b, lam)


def _uniform_partner(rng: np.random.Generator, anchors: np.ndarray, n: int) -> np.ndarray:
    """For each anchor i, a partner j uniform over {0..n-1} minus {i}."""
    j = rng.integers(0, n - 1, size=anchors.shape[0])
    return j + (j >= anchors)


class PairSampler:
    """Pairs (X, X') for DG-Mix pre-training (paper §3.3; SPEC §4).

    The caller passes the number of windows of ONE machine type, all sections and both domains
    (development + additional training data). Each epoch visits every window once as X (a
    random permutation) and pairs it with a partner X' drawn uniformly from all the other
    windows (i != j). ``epoch(e)`` is a deterministic function of (seed, e).
    """

    def __init__(self, n_windows: int, seed: int = 0) -> None:
        if int(n_windows) < 2:
            raise ValueError(f"PairSampler needs at least 2 windows to form pairs, got {n_windows}")
        self.n_windows = int(n_windows)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.n_windows

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))

    def _partners(self, rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
        return _uniform_partner(rng, anchors, self.n_windows)

    def epoch(self, epoch: int) -> tuple[Tensor, Tensor]:
        """(idx_a, idx_b): two int64 tensors of length ``n_windows``; idx_a is a permutation of
        all windows and idx_b[k] != idx_a[k]."""
        rng = self._rng(epoch)
        a = rng.permutation(self.n_windows)
        b = self._partners(rng, a)
        return torch.from_numpy(a.astype(np.int64)), torch.from_numpy(b.astype(np.int64))

    def batches(
        self, epoch: int, batch_size: int, drop_last: bool = True, rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (idx_a, idx_b) batches of one epoch. With ``world_size`` > 1, each rank gets
        a disjoint, equally sized share (every rank must see the same number of batches)."""
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batches() arguments: batch_size={batch_size}, rank={rank}, "
                             f"world_size={world_size}")
        a, b = self.epoch(epoch)
        if world_size > 1:
            per_rank = len(a) // world_size
            a, b = a[rank * per_rank:(rank + 1) * per_rank], b[rank * per_rank:(rank + 1) * per_rank]
        stop = len(a) - len(a) % batch_size if drop_last else len(a)
        for start in range(0, stop, batch_size):
            yield a[start:start + batch_size], b[start:start + batch_size]


class FinetunePairSampler(PairSampler):
    """Pairs for mixup fine-tuning (paper §3.4; SPEC §5): within and across domains and sections.

    Default (``cross_domain_p=None``): as :class:`PairSampler`, the partner is uniform over all
    other windows of the machine type, so source x source, source x target, target x target and
    cross-section pairs all occur, in proportion to the data (with 990 source / 10 target clips
    per section, ~2 % of pairs involve a target window). The paper does not give the proportions;
    this is our interpretation.

    ``cross_domain_p`` (with ``domains``, one label per window, e.g. "source"/"target"): the
    partner is drawn from the anchor's other domain with this probability, else from its own
    domain (uniformly, excluding the anchor itself), which makes inter-domain pairs much more
    frequent. If a domain has no other window to offer, the partner is uniform over all.
    """

    def __init__(
        self,
        n_windows: int,
        seed: int = 0,
        domains: Sequence[str] | np.ndarray | None = None,
        cross_domain_p: float | None = None,
    ) -> None:
        super().__init__(n_windows, seed)
        if cross_domain_p is not None:
            if not 0.0 <= cross_domain_p <= 1.0:
                raise ValueError(f"cross_domain_p must be in [0, 1], got {cross_domain_p}")
            if domains is None:
                raise ValueError("cross_domain_p needs the per-window domains")
        self.cross_domain_p = cross_domain_p
        self.domains: np.ndarray | None = None
        if domains is not None:
            self.domains = np.asarray(domains)
            if self.domains.shape != (self.n_windows,):
                raise ValueError(f"domains must have one entry per window ({self.n_windows}), "
                                 f"got shape {self.domains.shape}")

    def _partners(self, rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
        partners = _uniform_partner(rng, anchors, self.n_windows)
        if self.cross_domain_p is None or self.domains is None:
            return partners
        anchor_dom = self.domains[anchors]
        cross = rng.random(len(anchors)) < self.cross_domain_p
        for dom in np.unique(self.domains):
            same_pool = np.flatnonzero(self.domains == dom)  # sorted window indices
            other_pool = np.flatnonzero(self.domains != dom)
            # same domain, excluding the anchor: draw among |pool| - 1 slots, skip its slot
            sel = np.flatnonzero((anchor_dom == dom) & ~cross)
            if len(sel) and len(same_pool) >= 2:
                slot = np.searchsorted(same_pool, anchors[sel])
                r = rng.integers(0, len(same_pool) - 1, size=len(sel))
                partners[sel] = same_pool[r + (r >= slot)]
            sel = np.flatnonzero((anchor_dom == dom) & cross)
            if len(sel) and len(other_pool):
                partners[sel] = other_pool[rng.integers(0, len(other_pool), size=len(sel))]
        return partners
