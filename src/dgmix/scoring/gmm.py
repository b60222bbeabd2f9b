"""Density back ends: a Gaussian model per section on pooled clip vectors, score = negative log-likelihood.

Not in the DG-Mix paper (§3.5 uses k-NN). The reference is TWFR-GMM (Guan et al., ICASSP 2023):
a Gaussian mixture per section on time-pooled log-mel vectors, anomaly score = NLL. Two models,
each named for what it computes:

* ``"gmm-diag"``: a mixture of diagonal Gaussians (:class:`sklearn.mixture.GaussianMixture`,
  variance floor ``REG_COVAR``), the component count the one with the lowest BIC among
  1 .. ``MAX_COMPONENTS`` (capped at the clip count);
* ``"gauss-lw"``: one Gaussian with a full covariance shrunk towards a scaled identity by the
  Ledoit-Wolf rule (:class:`sklearn.covariance.LedoitWolf`). A section has fewer clips than
  dimensions (12 against 128 on the default synthetic set); the sample covariance is then
  singular, and an unshrunk full covariance is no density at all (its NLL is the squared distance
  to the span of the training clips over the variance floor). Shrinkage keeps it a density whose
  NLL reads as one.

``per_domain`` (our design for the few target clips, not TWFR's): one component per domain present
in the section, the means the domain means, one shared covariance estimated on the within-domain
residuals (diagonal, or Ledoit-Wolf), equal weights. The 10 target clips then set only a mean.

The fitted model is kept as buffers padded to the largest component count ``K``: ``means``
(S, K, D), ``prec`` (S, K, D) (1/σ, diagonal) or (S, K, D, D) (the Cholesky factor of the
precision, as sklearn's ``precisions_cholesky_``: ``(x − μ) @ P`` is whitened), ``log_weights``
(S, K), a padding component weighted by ``-BIG``, and ``log_det`` (S, K), the log-determinant of
each ``prec``. Scores are computed in float64.

Training scores for the decision threshold (:meth:`GaussianDensity.loo_scores`) are cross-fitted:
each section's clips are split into ``FOLDS`` folds (clip i in fold i mod FOLDS) and each fold
is scored by a model fitted on the others with the component count chosen on all clips.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from scipy.linalg import solve_triangular
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.mixture import GaussianMixture
from threadpoolctl import ThreadpoolController
from torch import Tensor, nn

from dgmix.candidates import DENSITIES
from dgmix.scoring.knn import BIG, _select

__all__ = ["DENSITIES", "GaussianDensity"]

MAX_COMPONENTS = 4
REG_COVAR = 1e-6
FOLDS = 10


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's BLAS libraries, found once (finding them costs ~3 ms, more than a small fit)."""
    return ThreadpoolController()


def one_blas_thread():  # noqa: ANN201 (a threadpoolctl limiter, used as a context manager)
    """Fits of D x D matrices run on one BLAS thread: more threads cost more than they give there
    (measured on 2 busy cores: a Ledoit-Wolf fit 10 ms on one thread, about 1 s on two)."""
    return _blas().limit(limits=1)


def _lw_prec_chol(resid: np.ndarray) -> np.ndarray:
    """Cholesky factor of the precision of the Ledoit-Wolf covariance of centred rows ``resid``."""
    emp = resid.T @ resid / resid.shape[0]
    shrink = ledoit_wolf_shrinkage(resid, assume_centered=True)
    cov = (1.0 - shrink) * emp + shrink * (np.trace(emp) / emp.shape[0]) * np.eye(emp.shape[0])
    chol = np.linalg.cholesky(cov + REG_COVAR * np.eye(cov.shape[0]))
    return solve_triangular(chol, np.eye(cov.shape[0]), lower=True).T


class GaussianDensity(nn.Module):
    """Per-section Gaussian model of pooled clip vectors; score = NLL (module docstring)."""

    means: Tensor
    prec: Tensor
    log_weights: Tensor
    log_det: Tensor

    def __init__(self, kind: str = "gmm-diag", per_domain: bool = False, seed: int = 0) -> None:
        super().__init__()
        if kind not in DENSITIES:
            raise ValueError(f"density must be one of {', '.join(DENSITIES)}, got {kind!r}")
        self.kind, self.per_domain, self.seed = kind, bool(per_domain), int(seed)
        for name in ("means", "prec", "log_weights", "log_det"):
            self.register_buffer(name, torch.empty(0, dtype=torch.float64))
        self._k: dict[int, int] = {}

    def settings(self) -> dict:
        return {"kind": self.kind, "per_domain": self.per_domain, "seed": self.seed}

    # -- fitting -----------------------------------------------------------------------------
    def _fit_one(self, x: np.ndarray, dom: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(means, prec, weights) of one section; ``k`` None: chosen by BIC (``gmm-diag``)."""
        if self.per_domain:
            doms = np.unique(dom)
            means = np.stack([x[dom == d].mean(axis=0) for d in doms])
            resid = x - means[np.searchsorted(doms, dom)]
            if self.kind == "gmm-diag":
                prec = np.tile(1.0 / np.sqrt((resid**2).mean(axis=0) + REG_COVAR), (len(doms), 1))
            else:
                prec = np.tile(_lw_prec_chol(resid)[None], (len(doms), 1, 1))
            return means, prec, np.full(len(doms), 1.0 / len(doms))
        if self.kind == "gauss-lw":
            mu = x.mean(axis=0, keepdims=True)
            return mu, _lw_prec_chol(x - mu)[None], np.ones(1)
        if k is None:
            ks = range(1, min(MAX_COMPONENTS, x.shape[0]) + 1)
            k = int(ks[int(np.argmin([self._gmm(j).fit(x).bic(x) for j in ks]))])
        gm = self._gmm(k).fit(x)
        return gm.means_, gm.precisions_cholesky_, gm.weights_

    def _gmm(self, k: int) -> GaussianMixture:
        return GaussianMixture(k, covariance_type="diag", reg_covar=REG_COVAR, random_state=self.seed)

    @property
    def components(self) -> dict[int, int]:
        """Component count of each fitted section."""
        return dict(self._k)

    @torch.no_grad()
    def fit(self, x: Tensor, sections: np.ndarray, domains: np.ndarray, n_sections: int,
            components: dict[int, int] | None = None) -> GaussianDensity:
        """Fit one model per section on the pooled training vectors ``x`` (N, D); returns ``self``.
        ``components``: ``gmm-diag``'s component count per section (capped at its clips), instead
        of the BIC's choice (the label-free selection chooses it once for all its folds)."""
        xs = x.double().numpy()
        sections, domains = np.asarray(sections), np.asarray(domains)
        fits = {}
        self._k = {}
        for s in np.unique(sections):
            m = sections == s
            if m.sum() < 2:
                raise ValueError(f"section {int(s):02d} has {int(m.sum())} training clip; a density needs 2")
            with one_blas_thread():
                k = None if components is None else min(components[int(s)], int(m.sum()))
                fits[int(s)] = self._fit_one(xs[m], domains[m], k)
            self._k[int(s)] = len(fits[int(s)][2])
        dim = xs.shape[1]
        k_max = max(self._k.values())
        diag = self.kind == "gmm-diag"
        self.means = torch.zeros(n_sections, k_max, dim, dtype=torch.float64)
        eye = torch.ones(dim, dtype=torch.float64) if diag else torch.eye(dim, dtype=torch.float64)
        self.prec = eye.expand(n_sections, k_max, *eye.shape).clone()
        self.log_weights = torch.full((n_sections, k_max), -BIG, dtype=torch.float64)
        for s, (mu, pc, w) in fits.items():
            k = len(w)
            self.means[s, :k] = torch.from_numpy(mu)
            self.prec[s, :k] = torch.from_numpy(np.asarray(pc).reshape(k, *eye.shape))
            self.log_weights[s, :k] = torch.from_numpy(np.log(w))
        self.log_det = self._log_det(self.prec, diag)
        return self

    @staticmethod
    def _log_det(prec: Tensor, diag: bool) -> Tensor:
        """log det of each precision factor: (..., D) diagonal or (..., D, D) triangular."""
        return torch.log(prec if diag else torch.diagonal(prec, dim1=-2, dim2=-1)).sum(dim=-1)

    # -- scoring -----------------------------------------------------------------------------
    @staticmethod
    def _nll(x: Tensor, means: Tensor, prec: Tensor, log_weights: Tensor, log_det: Tensor) -> Tensor:
        """``-log p(x)`` of the rows of ``x`` (M, D) under one mixture, float64."""
        diff = x.double()[:, None, :] - means[None]
        y = diff * prec[None] if prec.dim() == 2 else torch.einsum("mkd,kde->mke", diff, prec)
        log_prob = -0.5 * (x.shape[1] * math.log(2 * math.pi) + (y * y).sum(dim=2)) + log_det[None]
        return -torch.logsumexp(log_prob + log_weights[None], dim=1)

    def forward(self, x: Tensor, section: Tensor) -> Tensor:
        """NLL ``(M,)`` of the clip vectors ``x`` (M, D) of the 0-d int64 ``section``."""
        sec = section.reshape(())
        return self._nll(x, _select(self.means, sec), _select(self.prec, sec), _select(self.log_weights, sec),
                         _select(self.log_det, sec))

    @torch.no_grad()
    def loo_scores(self, x: Tensor, sections: np.ndarray, domains: np.ndarray) -> np.ndarray:
        """Cross-fitted training scores (module docstring) of the clips given to :meth:`fit` (in
        this process: a loaded density has no record of its fit)."""
        if not self._k:
            raise RuntimeError("loo_scores needs the fit() of this object, not a loaded state")
        xs = x.double().numpy()
        sections, domains = np.asarray(sections), np.asarray(domains)
        out = np.empty(len(xs))
        for s in np.unique(sections):
            idx = np.flatnonzero(sections == s)
            fold = np.arange(idx.size) % min(FOLDS, idx.size)
            for f in np.unique(fold):
                tr, te = idx[fold != f], idx[fold == f]
                if tr.size < 2 or (self.per_domain and set(domains[te]) - set(domains[tr])):
                    tr = idx  # too few clips (or a domain's only clips) to hold out
                with one_blas_thread():
                    mu, pc, w = self._fit_one(xs[tr], domains[tr], min(self._k[int(s)], tr.size))
                pc_t = torch.from_numpy(np.asarray(pc))
                log_det = self._log_det(pc_t, self.kind == "gmm-diag")
                out[te] = self._nll(torch.from_numpy(xs[te]), torch.from_numpy(mu), pc_t,
                                    torch.from_numpy(np.log(w)), log_det).numpy()
        return out
