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

Two ways to draw the same distribution: :meth:`PairSampler.__call__` (the host path: per-group
draws of data-dependent sizes, the random stream of earlier runs) and :meth:`PairSampler.draw_static`
(the device-resident path, :mod:`dgmix.training.device_data`): a fixed number of draws per anchor
and no host synchronisation (no ``nonzero``, no Python branch on tensor values), so that a whole
training step can be captured in a CUDA graph (:mod:`dgmix.training.step_graph`). The two draw
different random streams.
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
        self._build_static_tables()

    def _build_static_tables(self) -> None:
        """Index tables of :meth:`draw_static`, per group in ``self.pools`` order and per pool
        (0: every window, 1: source, 2: target): the pools concatenated (``flat``, padded with one
        dummy entry so that an empty pool can still be indexed; such draws are masked out), each
        group's first position (``start``) and size (``size``), each window's group number
        (``gid``) and its position in its own group's pool (``rank``), and which pair types a
        group can form (``valid``, (groups, 3))."""
        self.gid = torch.zeros(self.n_windows, dtype=torch.long)
        self.flat, self.start, self.size, self.rank = [], [], [], []
        for k in range(3):
            parts = [pools[k] for pools in self.pools.values()]
            sizes = torch.tensor([len(t) for t in parts], dtype=torch.long)
            rank = torch.zeros(self.n_windows, dtype=torch.long)
            for t in parts:
                rank[t] = torch.arange(len(t))
            self.flat.append(torch.cat(parts + [torch.zeros(1, dtype=torch.long)]))
            self.start.append(torch.cumsum(sizes, 0) - sizes)
            self.size.append(sizes)
            self.rank.append(rank)
        for i, pools in enumerate(self.pools.values()):
            self.gid[pools[0]] = i
        n_src, n_tgt = self.size[1], self.size[2]
        self.valid = torch.stack([n_src >= 2, (n_src > 0) & (n_tgt > 0), n_tgt >= 2], dim=1)
        self.singleton = bool((self.size[0] < 2).any())
        if self.shares is not None:
            p = [float(v) for v in self.shares]
            # kind = (u >= c0) + (u >= c1) for u ~ U[0, 1): P(kind) = shares, a zero share exactly never
            c0 = p[0]
            c1 = c0 if p[1] == 0 else (1.0 if p[2] == 0 else c0 + p[1])
            self.cuts = (c0, c1)

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
        self.gid, self.valid = self.gid.to(device), self.valid.to(device)
        for name in ("flat", "start", "size", "rank"):
            setattr(self, name, [t.to(device) for t in getattr(self, name)])
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

    def draw_static(self, idx: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(a, b)`` as :meth:`__call__` draws them (the same distribution, another random
        stream), with a fixed number of draws and no host synchronisation, so that it can run in a
        CUDA graph. ``idx``, the tables (:meth:`to`) and ``generator`` must share a device.

        Per anchor, four uniforms: the pair type, the fallback partner (uniform over the other
        windows of the anchor's group), the replacement X when the anchor's domain does not fit
        the type, and X'. Each candidate is computed for every anchor and kept with
        ``torch.where``, which is where :meth:`__call__` branches. Unlike there, a group with a
        single window is refused whichever anchors are drawn (checked on the host tables).
        """
        if self.uniform:
            return self(idx, generator)  # already a fixed number of draws, no synchronisation
        if self.singleton:
            raise ValueError("a section with a single training window cannot form a mixup pair")
        u = torch.rand((4, *idx.shape), generator=generator, device=idx.device, dtype=torch.float64)
        g = self.gid[idx]
        b_any = self._other(0, g, idx, u[1])  # uniform in the group: the fallback, as in __call__
        if self.shares is None:
            return idx, b_any
        kind = (u[0] >= self.cuts[0]).long() + (u[0] >= self.cuts[1]).long()
        pool_a = torch.where(kind == 2, 2, 1)  # target for target x target, else source
        keep = self.domain[idx] == torch.where(kind == 2, TARGET, SOURCE)
        a = torch.where(keep, idx, self._pick(pool_a, g, u[2]))
        pool_b = torch.where(kind == 0, 1, 2)
        same = kind != 1  # source x source and target x target: X' is another window of X's pool
        b = torch.where(same, self._other(pool_b, g, a, u[3]), self._pick(pool_b, g, u[3]))
        valid = self.valid[g, kind]
        return torch.where(valid, a, idx), torch.where(valid, b, b_any)

    def _table(self, name: str, pool: int | Tensor, g: Tensor) -> Tensor:
        """``getattr(self, name)[pool][g]`` with ``pool`` a number or a per-anchor tensor."""
        tables = getattr(self, name)
        if isinstance(pool, int):
            return tables[pool][g]
        return torch.where(pool == 1, tables[1][g], tables[2][g])

    def _pick(self, pool: int | Tensor, g: Tensor, u: Tensor) -> Tensor:
        """A uniform member of group ``g``'s ``pool`` (0 all, 1 source, 2 target) for each uniform
        ``u``; a placeholder where that pool is empty (masked out by the caller)."""
        size = self._table("size", pool, g)
        r = torch.minimum((u * size).long(), (size - 1).clamp_min(0))
        return self._flat(pool, self._table("start", pool, g) + r)

    def _other(self, pool: int | Tensor, g: Tensor, member: Tensor, u: Tensor) -> Tensor:
        """A uniform member of group ``g``'s ``pool`` other than ``member`` (which belongs to it),
        for each uniform ``u``: position r in [0, size - 2], shifted past the member's own."""
        size = self._table("size", pool, g)
        r = torch.minimum((u * (size - 1)).long(), (size - 2).clamp_min(0))
        slot = self._table_rank(pool, member)
        return self._flat(pool, self._table("start", pool, g) + r + (r >= slot).long())

    def _table_rank(self, pool: int | Tensor, member: Tensor) -> Tensor:
        if isinstance(pool, int):
            return self.rank[pool][member]
        return torch.where(pool == 1, self.rank[1][member], self.rank[2][member])

    def _flat(self, pool: int | Tensor, pos: Tensor) -> Tensor:
        """Window at position ``pos`` of the concatenated ``pool``, clamped into the table (an
        out-of-range position only arises where the draw is masked out)."""
        if isinstance(pool, int):
            flat = self.flat[pool]
            return flat[pos.clamp(0, len(flat) - 1)]
        src, tgt = self.flat[1], self.flat[2]
        return torch.where(pool == 1, src[pos.clamp(0, len(src) - 1)], tgt[pos.clamp(0, len(tgt) - 1)])
