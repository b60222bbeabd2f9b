"""Choosing the pairs (X, X') that mixup mixes (paper §3.3-3.4).

The training loop shards and shuffles the windows of one machine type and hands each step a batch
of anchor indices; :class:`PairSampler` turns them into pairs with the loop's ``torch.Generator``,
so a resumed run draws the same pairs.

* Pre-training (paper §3.3): X is the anchor and X' is uniform over every other window of the
  machine type (all sections, both domains): ``PairSampler(n)``.
* Fine-tuning (paper §3.4): "a mixup strategy on the source and target data for each section is
  used to generate augmented data of intra-domain and inter-domain samples". Both windows of a
  pair come from the anchor's section (``PairSampler(n, sections, domains, shares)``). The paper
  gives no proportions of intra- and inter-domain pairs, so they are a config setting
  (``finetune.pair_shares``):

  - ``shares=(ss, st, tt)`` (default equal shares): each pair is source×source, source×target or
    target×target with these probabilities. The anchor's section is kept; the anchor itself is
    kept when its domain fits the drawn type, else X is drawn uniformly from the fitting domain of
    that section. A type whose domain pool is too small falls back to a uniform partner in the
    section;
  - ``shares=None``: X' uniform over the other windows of the anchor's section (with 990 source
    and 10 target clips per section about 2 % of pairs then involve a target window).

  So a fine-tuning pair always shares its section: under the defaults
  (``finetune.classes: section``) the "mixed section ID" target of paper §3.4,
  lambda onehot(a) + (1 - lambda) onehot(b), is the one-hot label of that section. It is a true
  mixture only when the classes are finer than sections (``finetune.classes:
  section+attributes``, or ``auto`` on one-section data) and the two windows' attributes differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["PairSampler", "pair_shares"]

SOURCE, TARGET = 0, 1


def pair_shares(shares: Sequence[float]) -> tuple[float, float, float]:
    """``shares`` (source×source, source×target, target×target) as probabilities; ValueError unless
    they are three non-negative numbers with a positive sum (also used to validate the config)."""
    values = [float(v) for v in shares]
    if len(values) != 3 or min(values) < 0 or not sum(values) > 0:
        raise ValueError(f"pair_shares must be three non-negative numbers [ss, st, tt] with a positive sum, "
                         f"got {list(shares)}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def _draw(pool: Tensor, n: int, generator: torch.Generator) -> Tensor:
    return pool[torch.randint(0, len(pool), (n,), generator=generator, device=pool.device)]


def _draw_other(pool: Tensor, anchors: Tensor, generator: torch.Generator) -> Tensor:
    """For anchors that lie in the sorted index set ``pool``, a uniform *other* member of it."""
    slot = torch.searchsorted(pool, anchors)
    r = torch.randint(0, len(pool) - 1, anchors.shape, generator=generator, device=pool.device)
    return pool[r + (r >= slot).long()]


class PairSampler:
    """Draws (X, X') index pairs for a batch of anchor indices (see the module docstring).

    Args:
        n_windows: windows of the machine type (at least 2).
        sections: section index of each window: partners then come from the anchor's section
            (fine-tuning); None: from the whole machine type (pre-training).
        domains: 0 = source, 1 = target for each window (needed for ``shares``).
        shares: probabilities of source×source, source×target and target×target pairs, or None
            (partner uniform in the section, or the machine type).
    """

    def __init__(
        self, n_windows: int, sections: Sequence[int] | np.ndarray | None = None,
        domains: Sequence[int] | np.ndarray | None = None, shares: Sequence[float] | None = None,
    ) -> None:
        if int(n_windows) < 2:
            raise ValueError(f"mixup needs at least two windows to form pairs, got {n_windows}")
        self.n_windows = int(n_windows)
        self.uniform = sections is None and shares is None
        self.shares: Tensor | None = None
        if shares is not None:
            self.shares = torch.tensor(pair_shares(shares), dtype=torch.float64)
            if domains is None:
                raise ValueError("pair shares need the domain of every window")
        groups = self._labels(sections, "sections")
        doms = self._labels(domains, "domains") if domains is not None else torch.zeros(self.n_windows,
                                                                                         dtype=torch.long)
        self.group, self.domain = groups, doms
        # per group (a section, or the machine type): all, source and target windows (sorted index tensors)
        self.pools = {
            int(g): (torch.nonzero(groups == g).flatten(),
                     torch.nonzero((groups == g) & (doms == SOURCE)).flatten(),
                     torch.nonzero((groups == g) & (doms == TARGET)).flatten())
            for g in torch.unique(groups).tolist()
        }

    def _labels(self, values: Sequence[int] | np.ndarray | None, what: str) -> Tensor:
        if values is None:
            return torch.zeros(self.n_windows, dtype=torch.long)
        t = torch.as_tensor(np.asarray(values), dtype=torch.long)
        if t.shape != (self.n_windows,):
            raise ValueError(f"{what} must have one entry per window ({self.n_windows}), got {tuple(t.shape)}")
        return t

    def to(self, device: torch.device | str) -> PairSampler:
        """Move the index tables to ``device`` (in place; returns self). Anchors and the generator
        passed to :meth:`__call__` must then live there too (the device-resident path,
        :mod:`dgmix.training.device_data`)."""
        self.group, self.domain = self.group.to(device), self.domain.to(device)
        self.pools = {g: tuple(t.to(device) for t in pools) for g, pools in self.pools.items()}
        if self.shares is not None:
            self.shares = self.shares.to(device)
        return self

    def __call__(self, idx: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(a, b)``: the windows X and X' of each pair, int64 tensors shaped like ``idx``."""
        if self.uniform:
            offset = torch.randint(1, self.n_windows, idx.shape, generator=generator, device=idx.device)
            return idx, (idx + offset) % self.n_windows  # uniform over the other n - 1 windows
        a, b = idx.clone(), torch.empty_like(idx)
        kinds = (None if self.shares is None
                 else torch.multinomial(self.shares, idx.numel(), replacement=True, generator=generator))
        for g, (every, src, tgt) in self.pools.items():
            sel = torch.nonzero(self.group[idx] == g).flatten()
            if not len(sel):
                continue
            if len(every) < 2:
                raise ValueError("a section with a single training window cannot form a mixup pair")
            b[sel] = _draw_other(every, idx[sel], generator)  # uniform in the group (also the fallback)
            if kinds is None:
                continue
            for kind, (pool_a, pool_b) in enumerate(((src, src), (src, tgt), (tgt, tgt))):
                k = sel[kinds[sel] == kind]
                if not len(k) or len(pool_a) == 0 or len(pool_b) == 0 or (pool_a is pool_b and len(pool_a) < 2):
                    continue
                keep = self.domain[idx[k]] == (SOURCE if pool_a is src else TARGET)
                a[k[~keep]] = _draw(pool_a, int((~keep).sum()), generator)
                b[k] = (_draw_other(pool_b, a[k], generator) if pool_a is pool_b
                        else _draw(pool_b, len(k), generator))
        return a, b
