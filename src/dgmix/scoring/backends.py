"""Back ends by name: what turns a clip embedding into an anomaly score, each named for what it computes.

* ``"<k>nn"``: mean Euclidean distance to the k nearest training clips of the section
  (:class:`~dgmix.scoring.knn.KNNBank`; ``1nn`` is the paper's §3.5 score);
* ``"<k>nn-std"``: the same on per-dimension standardised embeddings;
* ``"gmm-diag"``: NLL under a BIC-sized mixture of diagonal Gaussians;
* ``"gauss-lw"``: NLL under one Gaussian with a Ledoit-Wolf shrunk covariance
  (:class:`~dgmix.scoring.gmm.GaussianDensity`).

Every back end has the same calls: ``fit(x, sections, domains, n_sections)`` on pooled training
vectors, ``forward(x, section)`` for the rows of one section, and ``loo_scores`` for the
training clips (left out of their own fit) behind the decision threshold. ``per_domain`` splits
each section by domain (the k-NN's per-domain banks, the densities' per-domain components).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dgmix.candidates import parse_backend
from dgmix.scoring.gmm import GaussianDensity
from dgmix.scoring.knn import KNNBank

__all__ = ["backend_settings", "fit_backend", "loo_scores", "make_backend", "score_rows"]


def make_backend(name: str, per_domain: bool = False, seed: int = 0) -> nn.Module:
    """An unfitted back end called ``name``."""
    spec = parse_backend(name)
    if spec["kind"] == "knn":
        return KNNBank(spec["k"], spec["standardize"], per_domain)
    return GaussianDensity(spec["kind"], per_domain, seed)


def fit_backend(name: str, per_domain: bool, x: Tensor, sections: np.ndarray, domains: np.ndarray,
                n_sections: int, seed: int = 0) -> nn.Module:
    """A back end called ``name`` fitted on the pooled training vectors ``x`` (N, D)."""
    return make_backend(name, per_domain, seed).fit(x, sections, domains, n_sections)


def loo_scores(backend: nn.Module, x: Tensor, sections: np.ndarray, domains: np.ndarray) -> np.ndarray:
    """Training scores of the clips the back end was fitted on, each without its own clip."""
    if isinstance(backend, KNNBank):
        return backend.loo_scores(x, sections)
    return backend.loo_scores(x, sections, domains)


@torch.no_grad()
def score_rows(backend: nn.Module, x: Tensor, sections: np.ndarray) -> np.ndarray:
    """Scores of many pooled vectors ``x`` (M, D) of any sections (one back-end call per section;
    the k-NN's matrix-product distances)."""
    if isinstance(backend, KNNBank):
        return backend.scores(x, sections)
    sections = np.asarray(sections)
    out = np.empty(len(x))
    for s in np.unique(sections):
        m = sections == s
        out[m] = backend(x[torch.from_numpy(m)], torch.tensor(int(s))).double().numpy()
    return out


def backend_settings(backend: nn.Module) -> dict:
    """The constructor settings that are not in the name (saved in the detector's info)."""
    return {"seed": backend.seed} if isinstance(backend, GaussianDensity) else {}
