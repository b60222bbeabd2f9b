"""Choosing the partner X' of each window X for mixup (paper §3.3-3.4; SPEC §4-5).

The training loop shards and shuffles the windows X of one machine type; :class:`PartnerSampler`
then draws one partner X' != X per window with the loop's ``torch.Generator``, so a resumed run
draws the same partners.

* Pre-training (paper §3.3): X' is uniform over every other window of the machine type (all
  sections, both domains).
* Fine-tuning (paper §3.4): "a mixup strategy on the source and target data for each section is
  used to generate augmented data of intra-domain and inter-domain samples". The paper gives no
  proportions. Uniform partners (``cross_domain_p=None``, the default) mix within and across
  domains in proportion to the data: with 990 source and 10 target clips per section about 2 % of
  pairs involve a target window. With ``cross_domain_p = p`` (config ``finetune.cross_domain_p``)
  the partner comes from the anchor's *other* domain with probability p and from its own domain
  otherwise, which makes inter-domain pairs as frequent as asked. Our interpretation, hence a
  config option.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["PartnerSampler"]


def _uniform_other(pool: Tensor, anchors: Tensor, generator: torch.Generator) -> Tensor:
    """For anchors that lie in the sorted index set ``pool``, a uniform other member of ``pool``."""
    slot = torch.searchsorted(pool, anchors)
    r = torch.randint(0, len(pool) - 1, anchors.shape, generator=generator)
    return pool[r + (r >= slot).long()]


class PartnerSampler:
    """Draws X' for a batch of window indices X (see the module docstring).

    Args:
        n_windows: windows of the machine type (at least 2).
        domains: with ``cross_domain_p``, the domain of each window (0 = source, 1 = target, or
            any labels), one per window.
        cross_domain_p: probability that a partner comes from the other domain; ``None`` = uniform.
    """

    def __init__(
        self, n_windows: int, domains: Sequence[int] | np.ndarray | Tensor | None = None,
        cross_domain_p: float | None = None,
    ) -> None:
        if int(n_windows) < 2:
            raise ValueError(f"mixup needs at least two windows to form pairs, got {n_windows}")
        self.n_windows = int(n_windows)
        self.cross_domain_p = cross_domain_p
        self.pools: dict[int, tuple[Tensor, Tensor]] = {}
        self.domains: Tensor | None = None
        if cross_domain_p is None:
            return
        if not 0.0 <= cross_domain_p <= 1.0:
            raise ValueError(f"cross_domain_p must be in [0, 1], got {cross_domain_p}")
        if domains is None:
            raise ValueError("cross_domain_p needs the domain of every window")
        dom = torch.as_tensor(np.asarray(domains), dtype=torch.long)
        if dom.shape != (self.n_windows,):
            raise ValueError(f"domains must have one entry per window ({self.n_windows}), got {tuple(dom.shape)}")
        self.domains = dom
        for d in torch.unique(dom).tolist():
            self.pools[d] = (torch.nonzero(dom == d).flatten(), torch.nonzero(dom != d).flatten())

    def __call__(self, idx: Tensor, generator: torch.Generator) -> Tensor:
        """One partner per entry of ``idx`` (int64, same shape), never the window itself."""
        offset = torch.randint(1, self.n_windows, idx.shape, generator=generator)
        partners = (idx + offset) % self.n_windows  # uniform over the other n - 1 windows
        if self.domains is None:
            return partners
        anchor_dom = self.domains[idx]
        cross = torch.rand(idx.shape, generator=generator) < self.cross_domain_p
        for d, (same, other) in self.pools.items():
            mine = anchor_dom == d
            sel = mine & ~cross
            if sel.any() and len(same) >= 2:
                partners[sel] = _uniform_other(same, idx[sel], generator)
            sel = mine & cross
            if sel.any() and len(other):
                partners[sel] = other[torch.randint(0, len(other), (int(sel.sum()),), generator=generator)]
        return partners
