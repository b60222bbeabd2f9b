"""The k-NN back end (paper §3.5): distance from a clip embedding to its section's training clips.

The paper's anomaly score is the Euclidean distance from a test clip's embedding to the nearest
training-clip embedding of its section, both domains in one bank (``k = 1``). :class:`KNNBank`
computes that, and two extensions the ``logmel`` detector's label-free choice can pick
(:mod:`dgmix.methods.selection`; not in the paper):

* ``k > 1``: the mean of the k smallest distances (capped at the bank's size);
* ``standardize``: every dimension standardised with the mean and population std (floored at
  1e-6) of the section's training embeddings, so that a dimension with a wide normal range counts
  less: a nearest neighbour under a diagonal Mahalanobis distance;
* ``per_domain``: a source and a target bank per section; the distance to each is divided by that
  bank's scale (its mean leave-one-out k-NN distance, i.e. how far apart normal clips of that
  domain usually lie; the other domain's when a bank has a single clip) and the score is the
  smaller of the two. The ten target clips of a section are then not swamped by the 990 source ones.

The banks are buffers of the module (they travel in ``detector.pt``), stored padded:
``(S, B, N, D)`` for ``S`` sections, ``B`` banks per section (1, or 2 per domain) and ``N`` the
largest bank. ``forward`` (what scores a clip and is exported) computes distances from the
differences ``q − b`` (elementwise, then summed: exports to ONNX, unlike ``torch.cdist``, and has no
cancellation error), so each query's distances are independent of the other queries in the batch.
Bulk scoring on the Python side (:meth:`KNNBank.scores`: the label-free choice, the training
clips' leave-one-out scores) uses one float64 matrix product instead, far faster for many queries.
A padding row gets a distance of :data:`BIG` and a weight of 0, a missing bank ``BIG`` added to
its score so that the minimum over banks skips it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["BIG", "KNNBank"]

#: Distance of padding rows and missing banks: far above any real distance, finite in float32.
BIG = 1e30
#: clips of a bank whose leave-one-out distances set its per-domain scale (all when fewer)
SCALE_ROWS = 200
#: queries x bank rows x dimensions per block of the distance computation (64 MB in float32)
BLOCK = 1 << 24


def _select(t: Tensor, section: Tensor) -> Tensor:
    """``t[section]`` for a 0-d int64 section (an ONNX Gather)."""
    return torch.index_select(t, 0, section.reshape(1))[0]


class KNNBank(nn.Module):
    """Per-section (and per-domain) k-NN distance to training clip embeddings (module docstring).

    Build one with :meth:`fit`; ``forward(x, section)`` scores the rows of ``x`` (M, D), all of
    one section, and :meth:`loo_scores` gives the training clips' leave-one-out scores (for the
    decision threshold)."""

    bank: Tensor
    pad: Tensor
    weights: Tensor
    scales: Tensor
    absent: Tensor
    std_mean: Tensor
    std_scale: Tensor

    def __init__(self, k: int = 1, standardize: bool = False, per_domain: bool = False) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.standardize, self.per_domain = int(k), bool(standardize), bool(per_domain)
        for name in ("bank", "pad", "weights", "scales", "absent", "std_mean", "std_scale"):
            self.register_buffer(name, torch.empty(0))
        self._fit_rows: dict[tuple[int, int], np.ndarray] = {}  # (section, bank) -> training clip rows

    def settings(self) -> dict:
        return {"k": self.k, "standardize": self.standardize, "per_domain": self.per_domain}

    @property
    def n_banks(self) -> int:
        return 2 if self.per_domain else 1

    # -- fitting -----------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, x: Tensor, sections: np.ndarray, domains: np.ndarray, n_sections: int) -> KNNBank:
        """Fill the banks with the training clip embeddings ``x`` (N, D) of sections ``0..n_sections-1``
        (``domains``: 0 source, 1 target); returns ``self``."""
        x = x.float()
        sections, domains = np.asarray(sections), np.asarray(domains)
        dim, nb = x.shape[1], self.n_banks
        self.std_mean = torch.zeros(n_sections, dim)
        self.std_scale = torch.ones(n_sections, dim)
        for s in np.unique(sections):
            rows = x[torch.from_numpy(sections == s)]
            self.std_mean[s] = rows.mean(dim=0) if self.standardize else 0.0
            self.std_scale[s] = rows.std(dim=0, correction=0).clamp_min(1e-6) if self.standardize else 1.0
        z = (x - self.std_mean[sections]) / self.std_scale[sections]
        self._fit_rows = {}
        for s in range(n_sections):
            for b in range(nb):
                m = (sections == s) & ((domains == b) if self.per_domain else True)
                if m.any():
                    self._fit_rows[(s, b)] = np.flatnonzero(m)
        n_max = max((len(r) for r in self._fit_rows.values()), default=1)
        k_max = min(self.k, n_max)
        self.bank = torch.zeros(n_sections, nb, n_max, dim)
        self.pad = torch.full((n_sections, nb, n_max), BIG)
        self.weights = torch.zeros(n_sections, nb, k_max)
        self.scales = torch.ones(n_sections, nb)
        self.absent = torch.full((n_sections, nb), BIG)
        for (s, b), rows in self._fit_rows.items():
            n = len(rows)
            self.bank[s, b, :n] = z[torch.from_numpy(rows)]
            self.pad[s, b, :n] = 0.0
            self.weights[s, b, : min(self.k, n)] = 1.0 / min(self.k, n)
            self.absent[s, b] = 0.0
        if self.per_domain:
            self._fit_scales(z, sections, n_sections)
        return self

    def _fit_scales(self, z: Tensor, sections: np.ndarray, n_sections: int) -> None:
        """Each bank's scale: the mean leave-one-out k-NN distance of its own clips (of at most
        :data:`SCALE_ROWS` of them, evenly spaced: a mean, well estimated from a few hundred, and
        the cost stays linear in the bank's size)."""
        for s in range(n_sections):
            found = {}
            for b in range(2):
                rows = self._fit_rows.get((s, b))
                if rows is not None and len(rows) >= 2:
                    some = rows[np.linspace(0, len(rows) - 1, min(len(rows), SCALE_ROWS)).round().astype(int)]
                    d = self._bulk_distances(z[torch.from_numpy(some)], s)[b]
                    found[b] = float(self._loo_reduce(d, some, rows).mean())
            for b in range(2):
                val = found.get(b, found.get(1 - b, 1.0))
                self.scales[s, b] = val if np.isfinite(val) and val > 0 else 1.0

    # -- scoring -----------------------------------------------------------------------------
    def _raw_distances(self, z: Tensor, section: Tensor | int) -> Tensor:
        """Distances ``(B, M, N)`` of standardised queries ``z`` (M, D) to every row of the section's
        banks (padding rows at ``BIG``)."""
        sec = section if isinstance(section, Tensor) else torch.tensor(int(section))
        bank = _select(self.bank, sec)
        step = max(1, BLOCK // max(1, bank.shape[0] * bank.shape[1] * bank.shape[2]))
        blocks = [((z[None, i:i + step, None, :] - bank[:, None]) ** 2).sum(dim=3) for i in range(0, z.shape[0], step)]
        d2 = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
        return d2.sqrt() + _select(self.pad, sec)[:, None]

    def _bulk_distances(self, z: Tensor, section: int) -> Tensor:
        """As :meth:`_raw_distances` for many queries at once, in float64 from ``‖q‖² − 2 q·b + ‖b‖²``
        (one matrix product: fast; rounding ~1e-16 relative; Python-side scoring, not exported)."""
        bank = self.bank[section].double()
        q = z.double()
        d2 = (q * q).sum(dim=1)[None, :, None] - 2.0 * torch.matmul(q[None], bank.transpose(1, 2)) \
            + (bank * bank).sum(dim=2)[:, None, :]
        return d2.clamp_min(0.0).sqrt() + self.pad[section].double()[:, None]

    def _reduce(self, d: Tensor, sec: Tensor) -> Tensor:
        """Scores ``(M,)`` from the distances ``(B, M, N)`` to the section's banks."""
        weights = _select(self.weights, sec).to(d.dtype)
        near = torch.topk(d, weights.shape[1], dim=2, largest=False).values
        dist = (near * weights[:, None]).sum(dim=2) / _select(self.scales, sec).to(d.dtype)[:, None]
        return (dist + _select(self.absent, sec).to(d.dtype)[:, None]).amin(dim=0)

    def forward(self, x: Tensor, section: Tensor) -> Tensor:
        """Anomaly scores ``(M,)`` of clip embeddings ``x`` (M, D) of the 0-d int64 ``section``."""
        sec = section.reshape(())
        z = (x.float() - _select(self.std_mean, sec)) / _select(self.std_scale, sec)
        return self._reduce(self._raw_distances(z, sec), sec)

    @torch.no_grad()
    def scores(self, x: Tensor, sections: np.ndarray) -> np.ndarray:
        """Scores (float64) of many clip embeddings ``x`` (M, D) of any sections, computed with
        :meth:`_bulk_distances` (equal to :meth:`forward` up to rounding)."""
        sections = np.asarray(sections)
        z = (x.float() - self.std_mean[sections]) / self.std_scale[sections]
        out = np.empty(len(x))
        for s in np.unique(sections):
            m = torch.from_numpy(sections == s)
            out[m.numpy()] = self._reduce(self._bulk_distances(z[m], int(s)), torch.tensor(int(s))).numpy()
        return out

    def _loo_reduce(self, d: Tensor, query_rows: np.ndarray, bank_rows: np.ndarray) -> Tensor:
        """Mean of the k smallest of ``d`` (M, N) leaving out each query's own bank row; ``inf``
        for a query with no other row."""
        own = torch.from_numpy(query_rows[:, None] == bank_rows[None, :])
        d = d[:, : len(bank_rows)].masked_fill(own, float("inf"))
        k = min(self.k, len(bank_rows))
        near = torch.topk(d, k, dim=1, largest=False).values
        usable = torch.isfinite(near)
        count = usable.sum(dim=1)
        total = torch.where(usable, near, torch.zeros_like(near)).sum(dim=1)
        return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("inf")))

    @torch.no_grad()
    def loo_scores(self, x: Tensor, sections: np.ndarray) -> np.ndarray:
        """Leave-one-out scores of the clips given to :meth:`fit` (same ``x`` and order): each clip
        scored with its own bank row left out (the k-NN of a training clip to itself is 0). Needs
        the :meth:`fit` of this object (a loaded bank has no record of which clip is which row)."""
        if not self._fit_rows:
            raise RuntimeError("loo_scores needs the fit() of this object, not a loaded state")
        sections = np.asarray(sections)
        z = (x.float() - self.std_mean[sections]) / self.std_scale[sections]
        out = np.full(len(x), np.inf)
        for s in np.unique(sections):
            rows = np.flatnonzero(sections == s)
            d = self._bulk_distances(z[torch.from_numpy(rows)], int(s))
            best = torch.full((len(rows),), float("inf"), dtype=torch.float64)
            for b in range(self.n_banks):
                bank_rows = self._fit_rows.get((int(s), b))
                if bank_rows is None:
                    continue
                best = torch.minimum(best, self._loo_reduce(d[b], rows, bank_rows) / self.scales[s, b])
            out[rows] = best.double().numpy()
        if not np.isfinite(out).all():
            raise ValueError("a section has a single training clip: it cannot be scored with itself left out")
        return out
