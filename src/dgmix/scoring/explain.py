"""Why a clip scored as it did: a time x mel-bin map of what drives its anomaly score.

Not in the paper. The map answers "which part of this sound made it anomalous", from the same
detector that scored the clip (:class:`~dgmix.scoring.detector.Detector`):

* **pooled log-mel detectors** (``logmel``): the clip vector ``v`` is a weighted sum of the log-mel
  frames, ``v_j = sum_t W[t, j] x[t, j]`` with each bin's weights summing to 1 (mean: ``1/T``;
  max: 1 on the loudest frame of the bin; GWRP: its rank weights; :mod:`dgmix.scoring.pooling`).
  The back end's score is written as a sum over bins of terms linear in ``v_j - ref_j``,
  ``score = sum_r w_r sum_j a_rj (v_j - ref_rj)`` (:func:`_linear_terms`): for a k-NN bank the
  references are the nearest training clips, ``a = (z - b) / (sigma d)`` so that each neighbour's term
  is exactly its distance ``d``; for a Gaussian density the references are the component means
  and ``a`` half the precision times the difference, so that the terms are the Mahalanobis part of
  the negative log-likelihood, weighted by each component's responsibility. Placing bin ``j``'s term
  on the frames that the pooling weighted gives the map
  ``M[j, t] = sum_r w_r a_rj W[t, j] (x[t, j] - ref_rj)``, whose total over frames is that bin's
  contribution and whose grand total is the score (k-NN) or the quadratic part of the NLL (densities).
  A positive cell pushes the score up.
* **learned detectors** (an encoder and a back end, or the official baseline's classifier): the
  encoder mixes the bands, so the map is resolved in time only: each context window is scored
  on its own by the detector's back end (its distance to the section's training clips) or, for the
  baseline, by ``log((1 - p) / p)``; a frame gets the mean of the windows that cover it, the same
  value in every bin. No band is named for them.

The strongest bands (Hz: the band edges of a mel bin) and times (s: frame centres) are the largest
totals over frames and over bins, each at least a few bins or frames from the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dgmix.features import mel_band_edges
from dgmix.scoring.detector import EPS
from dgmix.scoring.gmm import GaussianDensity
from dgmix.scoring.knn import KNNBank, _select
from dgmix.scoring.pooling import gwrp_weights

__all__ = ["Explanation", "explain_frames", "pooling_weights"]

#: how many bands and times are named
TOP = 3
#: named bands lie at least this many mel bins apart
BAND_GAP = 3


@dataclass(frozen=True)
class Explanation:
    """One clip's explanation (module docstring).

    ``map``: ``(n_mels, T)`` float32, what each cell adds to the score (constant over bins when
    ``resolved == "time"``); ``frames``: the clip's log-mel ``(n_mels, T)`` it explains;
    ``bands_hz``: the strongest bands as (low, high) Hz, empty for time-resolved maps;
    ``times_s``: the strongest times in seconds (frame or window centres)."""

    score: float
    map: np.ndarray
    frames: np.ndarray
    resolved: str  # "time-mel" or "time"
    bands_hz: list[tuple[float, float]]
    times_s: list[float]

    def summary(self) -> dict:
        """The JSON form of the strongest bands and times (what ``POST /score?explain=1`` returns)."""
        return {"resolved": self.resolved,
                "bands_hz": [[round(lo, 1), round(hi, 1)] for lo, hi in self.bands_hz],
                "times_s": [round(t, 3) for t in self.times_s]}

    def csv_fields(self) -> tuple[str, str]:
        """``(bands, times)`` as CSV cells: ``low-high`` Hz and seconds, ``;``-separated."""
        return (";".join(f"{lo:.0f}-{hi:.0f}" for lo, hi in self.bands_hz),
                ";".join(f"{t:.2f}" for t in self.times_s))


def pooling_weights(x: Tensor, method: str, gwrp_r: float) -> Tensor:
    """``W`` ``(T, D)`` float64 with ``pool(x) = (W * x).sum(0)`` for frames ``x`` ``(T, D)``
    (:func:`dgmix.scoring.pooling.pool`); every column sums to 1."""
    t = x.shape[0]
    if method == "mean":
        return torch.full(x.shape, 1.0 / t, dtype=torch.float64)
    if method == "max":
        w = torch.zeros(x.shape, dtype=torch.float64)
        return w.scatter_(0, x.argmax(dim=0, keepdim=True), 1.0)
    if method == "gwrp":
        order = torch.argsort(x, dim=0, descending=True, stable=True)  # order[i, j]: frame of rank i
        w = torch.zeros(x.shape, dtype=torch.float64)
        return w.scatter_(0, order, gwrp_weights(x, gwrp_r).expand(-1, x.shape[1]).contiguous())
    raise ValueError(f"unknown pooling {method!r}")


def _knn_terms(bank: KNNBank, v: Tensor, sec: Tensor) -> list[tuple[float, Tensor, Tensor]]:
    mean, scale = _select(bank.std_mean, sec).double(), _select(bank.std_scale, sec).double()
    z = (v - mean) / scale
    rows, pad = _select(bank.bank, sec).double(), _select(bank.pad, sec).double()  # (B, N, D), (B, N)
    d = ((z[None, None] - rows) ** 2).sum(dim=2).sqrt() + pad
    weights = _select(bank.weights, sec).double()
    k = weights.shape[1]
    near = torch.topk(d, k, dim=1, largest=False)
    totals = (near.values * weights).sum(dim=1) / _select(bank.scales, sec).double() + _select(bank.absent, sec)
    b = int(torch.argmin(totals))
    terms = []
    for i in range(k):
        w, di = float(weights[b, i]), float(near.values[b, i])
        if w == 0.0 or di == 0.0:
            continue
        nb = rows[b, int(near.indices[b, i])]
        terms.append((w / float(bank.scales[int(sec), b]), (z - nb) / (scale * di), mean + scale * nb))
    return terms


def _density_terms(density: GaussianDensity, v: Tensor, sec: Tensor) -> list[tuple[float, Tensor, Tensor]]:
    means, prec = _select(density.means, sec), _select(density.prec, sec)
    log_w, log_det = _select(density.log_weights, sec), _select(density.log_det, sec)
    diff = v[None] - means  # (K, D)
    y = diff * prec if prec.dim() == 2 else torch.einsum("kd,kde->ke", diff, prec)
    log_prob = -0.5 * (y * y).sum(dim=1) + log_det + log_w
    resp = torch.softmax(log_prob, dim=0)
    a = 0.5 * (y * prec if prec.dim() == 2 else torch.einsum("kde,ke->kd", prec, y))
    return [(float(resp[k]), a[k], means[k]) for k in range(means.shape[0]) if float(resp[k]) > 1e-12]


def _linear_terms(backend: torch.nn.Module, v: Tensor, sec: Tensor) -> list[tuple[float, Tensor, Tensor]]:
    """``(w_r, a_r, ref_r)`` with ``sum_r w_r a_r . (v - ref_r)`` the score's part named in the module docstring."""
    if isinstance(backend, KNNBank):
        return _knn_terms(backend, v, sec)
    if isinstance(backend, GaussianDensity):
        return _density_terms(backend, v, sec)
    raise TypeError(f"no explanation for a {type(backend).__name__} back end")


def _peaks(values: np.ndarray, n: int, gap: int, positive: bool = True) -> list[int]:
    """Indices of the ``n`` largest ``values`` (only positive ones with ``positive``), each more
    than ``gap`` from those before."""
    out: list[int] = []
    for i in np.argsort(-values, kind="stable"):
        if (positive and values[i] <= 0) or len(out) == n:
            break
        if all(abs(int(i) - j) > gap for j in out):
            out.append(int(i))
    return out


@torch.inference_mode()
def explain_frames(detector, frames: np.ndarray, section: str) -> Explanation:  # noqa: ANN001 - a Detector
    """The explanation of one clip's log-mel ``frames`` ``(n_mels, T)`` in ``section`` (module docstring)."""
    info, params = detector.info, detector.params
    sec = torch.tensor(int(detector.section_index([section])[0]))
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    score = float(detector(x, sec))
    n_mels, t = x.shape
    hop_s = params.hop_length / params.sample_rate
    if info.kind == "logmel":
        xt = x.transpose(0, 1).double()  # (T, D)
        w = pooling_weights(xt, info.pooling, info.gwrp_r)
        v = (w * xt).sum(dim=0)
        m = torch.zeros_like(xt)
        for weight, a, ref in _linear_terms(detector.backend, v, sec):
            m += weight * a[None] * w * (xt - ref[None])
        cells = m.transpose(0, 1).float().numpy()
        edges = mel_band_edges(params)
        bands = [(float(edges[j]), float(edges[j + 2])) for j in _peaks(cells.sum(axis=1), TOP, BAND_GAP)]
        times = [i * hop_s for i in _peaks(cells.sum(axis=0), TOP, max(2, params.frames // 8))]
        return Explanation(score, cells, x.numpy(), "time-mel", bands, times)
    win = detector.windows(x).contiguous(memory_format=torch.channels_last)
    out = detector.encoder(win)
    if detector.classifier is not None:
        p = torch.softmax(detector.classifier(out).double(), dim=1)[:, int(sec)].clamp(EPS, 1 - EPS)
        per_window = torch.log((1 - p) / p)
    else:
        per_window = detector.backend(out, sec).double()
    p_len, hop = params.frames, params.window_hop
    total, count = np.zeros(t), np.zeros(t)
    for i, val in enumerate(per_window.numpy()):
        total[i * hop: i * hop + p_len] += val
        count[i * hop: i * hop + p_len] += 1
    curve = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    centres = [i * hop + p_len / 2 for i in _peaks(per_window.numpy(), TOP, max(1, p_len // (2 * hop)), False)]
    cells = np.repeat(curve[None].astype(np.float32), n_mels, axis=0)
    return Explanation(score, cells, x.numpy(), "time", [], [c * hop_s for c in centres])
