"""Gaussian-mixture back end (issue 14): per-section GMM on pooled clip embeddings, scored by NLL.

Not in the DG-Mix paper (§3.5 uses k-NN). The reference is TWFR-GMM (Guan et al., ICASSP 2023):
a GMM per section on time-pooled log-mel vectors, anomaly score = negative log-likelihood.

* Fitting uses :class:`sklearn.mixture.GaussianMixture` (``covariance`` ``"diag"`` or ``"full"``,
  ``reg_covar`` added to the variances); the number of components is the one with the lowest
  BIC on the section's training clips among 1 .. ``max_components`` (capped at the clip count).
* ``domain="tied"`` (domain handling for the few target clips; our design, not TWFR's): one
  component per domain present in the section, means = the domain means, one shared (tied)
  covariance = the pooled within-domain covariance, equal weights. The 4-10 target clips then
  set only a mean, the covariance comes from all clips, and the score (NLL of the two-component
  mixture, close to the smaller of the two domain distances) lets neither domain dominate.
  No BIC there: the components are the domains.
* The fitted mixture is kept as tensors (``means``, ``prec_chol`` = sklearn's
  ``precisions_cholesky_``, ``log_weights``, the section of each component) and scored in torch,
  so a detector bundle loads with ``torch.load(weights_only=True)``.
* Training scores for the decision threshold (:meth:`GMMScorer.loo_scores`) are cross-fitted:
  clips are split into ``folds`` folds per section (clip i in fold ``i % folds``) and each fold is
  scored by a mixture fitted on the other folds with the component count chosen on all clips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.linalg import solve_triangular
from sklearn.mixture import GaussianMixture
from torch import Tensor

from dgmix.scoring.fitted import FittedScorer
from dgmix.scoring.knn_inputs import clip_items, domain_ids, section_ids
from dgmix.scoring.pooling import POOL_METHODS, PoolMethod

__all__ = ["COVARIANCES", "GMM_DOMAINS", "GMMScorer", "gmm_log_likelihood"]

COVARIANCES = ("diag", "full")
GMM_DOMAINS = ("none", "tied")


def gmm_log_likelihood(x: Tensor, means: Tensor, prec_chol: Tensor, log_weights: Tensor) -> Tensor:
    """``log p(x)`` of each row of ``x`` (N, D) under one mixture, in float64.

    ``prec_chol``: (K, D) for diagonal covariances (1/σ per dimension) or (K, D, D) for full ones
    (sklearn's ``precisions_cholesky_``: ``(x − μ) @ P`` is whitened)."""
    x = x.double()
    d = x.shape[1]
    if prec_chol.ndim == 2:
        y = (x[:, None, :] - means[None]) * prec_chol[None]
        log_det = torch.log(prec_chol).sum(dim=1)
    else:
        y = torch.einsum("nkd,kde->nke", x[:, None, :] - means[None], prec_chol)
        log_det = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(dim=1)
    log_prob = -0.5 * (d * math.log(2 * math.pi) + (y**2).sum(dim=2)) + log_det[None]
    return torch.logsumexp(log_prob + log_weights[None], dim=1)


class GMMScorer(FittedScorer):
    """Per-section Gaussian mixture on pooled clip embeddings; score = NLL (module docstring).

    Same calls as :class:`~dgmix.scoring.knn.KNNScorer`: ``fit(embeddings, sections, domains)``,
    ``score(embeddings, sections)``, ``loo_scores(embeddings, sections)``; the embeddings are
    pooled over windows with ``pooling`` / ``gwrp_r``.
    """

    means: Tensor
    prec_chol: Tensor
    log_weights: Tensor
    comp_sections: Tensor

    _CONFIG = ("pooling", "gwrp_r", "covariance", "max_components", "reg_covar", "domain", "folds", "seed")

    def __init__(
        self,
        pooling: PoolMethod = "max",
        gwrp_r: float = 0.9,
        covariance: str = "diag",
        max_components: int = 4,
        reg_covar: float = 1e-6,
        domain: str = "none",
        folds: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.gwrp_r = float(gwrp_r)
        self.covariance = covariance
        self.max_components = int(max_components)
        self.reg_covar = float(reg_covar)
        self.domain = domain
        self.folds = int(folds)
        self.seed = int(seed)
        self.n_fit_clips = 0
        self._validate()
        self.register_buffer("means", torch.empty(0, 0, dtype=torch.float64))
        self.register_buffer("prec_chol", torch.empty(0, 0, dtype=torch.float64))
        self.register_buffer("log_weights", torch.empty(0, dtype=torch.float64))
        self.register_buffer("comp_sections", torch.empty(0, dtype=torch.long))

    def _validate(self) -> None:
        if self.pooling not in POOL_METHODS:
            raise ValueError(f"pooling must be one of {POOL_METHODS}, got {self.pooling!r}")
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        if self.domain not in GMM_DOMAINS:
            raise ValueError(f"domain must be one of {GMM_DOMAINS}, got {self.domain!r}")
        if self.max_components < 1 or self.folds < 2 or not self.reg_covar > 0:
            raise ValueError("max_components must be >= 1, folds >= 2 and reg_covar > 0")

    @property
    def is_fitted(self) -> bool:
        return self.means.shape[0] > 0

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + f", components={self.means.shape[0]}"

    # -- fitting -------------------------------------------------------------------------------
    def _sklearn(self, k: int) -> GaussianMixture:
        return GaussianMixture(k, covariance_type=self.covariance, reg_covar=self.reg_covar,
                               random_state=self.seed)

    def n_components(self, x: np.ndarray) -> int:
        """The component count with the lowest BIC on ``x`` among 1 .. min(max_components, N)."""
        ks = range(1, min(self.max_components, x.shape[0]) + 1)
        bics = [self._sklearn(k).fit(x).bic(x) for k in ks]
        return int(ks[int(np.argmin(bics))])

    def _fit_section(self, x: np.ndarray, dom: np.ndarray, k: int | None) -> tuple[np.ndarray, ...]:
        """(means, prec_chol, weights) of one section's mixture; ``k`` None = choose by BIC."""
        if self.domain == "tied":
            return _tied_mixture(x, dom, self.covariance, self.reg_covar)
        gm = self._sklearn(k if k is not None else self.n_components(x)).fit(x)
        return gm.means_, gm.precisions_cholesky_, gm.weights_

    @torch.no_grad()
    def fit(self, embeddings: Tensor | Sequence[Tensor], sections: Any, domains: Any = None,
            groups: Tensor | Sequence[int] | None = None) -> GMMScorer:
        """Fit one mixture per section on the pooled training embeddings; returns ``self``."""
        x, sec, dom = self._inputs(embeddings, sections, domains, groups)
        means, precs, logw, owner = [], [], [], []
        for s in np.unique(sec):
            m = sec == s
            if m.sum() < 2:
                raise ValueError(f"section {s:02d} has {int(m.sum())} training clip; a GMM needs at least 2")
            mu, pc, w = self._fit_section(x[m], dom[m], None)
            means.append(mu)
            precs.append(pc)
            logw.append(np.log(w))
            owner.append(np.full(mu.shape[0], s))
        self.means = torch.from_numpy(np.concatenate(means)).double()
        self.prec_chol = torch.from_numpy(np.concatenate(precs)).double()
        self.log_weights = torch.from_numpy(np.concatenate(logw)).double()
        self.comp_sections = torch.from_numpy(np.concatenate(owner)).long()
        self.n_fit_clips = x.shape[0]
        return self

    def _inputs(self, embeddings, sections, domains, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items, _, n = clip_items(embeddings, groups, False, self.pooling, self.gwrp_r)
        sec = section_ids(sections, n).numpy()
        dom = domain_ids(domains, n).numpy()
        return items.detach().cpu().double().numpy(), sec, dom

    # -- scoring -------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, embeddings: Tensor | Sequence[Tensor], sections: Any,
              groups: Tensor | Sequence[int] | None = None) -> Tensor:
        """Negative log-likelihood per clip under its section's mixture, ``(C,)`` float64."""
        if not self.is_fitted:
            raise RuntimeError("GMMScorer is not fitted: call fit() or load a state dict first")
        items, _, n = clip_items(embeddings, groups, False, self.pooling, self.gwrp_r)
        sec = section_ids(sections, n)
        dev = self.means.device
        x = items.detach().to(dev).double()
        sec = sec.to(dev)
        out = torch.empty(n, dtype=torch.float64, device=dev)
        for s in torch.unique(sec).tolist():
            q = sec == s
            c = self.comp_sections == s
            if not bool(c.any()):
                known = sorted(set(self.comp_sections.tolist()))
                raise ValueError(f"section {s:02d} has no mixture (fitted sections: "
                                 f"{', '.join(f'{k:02d}' for k in known)})")
            out[q] = -gmm_log_likelihood(x[q], self.means[c], self.prec_chol[c], self.log_weights[c])
        return out

    def forward(self, embeddings: Tensor, sections: Any) -> Tensor:
        return self.score(embeddings, sections)

    def loo_scores(self, embeddings: Tensor | Sequence[Tensor], sections: Any, domains: Any = None,
                   groups: Tensor | Sequence[int] | None = None) -> Tensor:
        """Cross-fitted training scores (module docstring), for the decision threshold."""
        if not self.is_fitted:
            raise RuntimeError("GMMScorer is not fitted: call fit() first")
        x, sec, dom = self._inputs(embeddings, sections, domains, groups)
        if x.shape[0] != self.n_fit_clips:
            raise ValueError(f"loo_scores needs the {self.n_fit_clips} clips given to fit(), got {x.shape[0]}")
        out = np.empty(x.shape[0])
        for s in np.unique(sec):
            idx = np.flatnonzero(sec == s)
            fold = np.arange(idx.size) % min(self.folds, idx.size)
            for f in np.unique(fold):
                tr, te = idx[fold != f], idx[fold == f]
                k = min(int((self.comp_sections == int(s)).sum()), max(tr.size, 1))
                if tr.size < 2:
                    mu, pc, w = self._fit_section(x[idx], dom[idx], k)  # too few clips to hold any out
                else:
                    mu, pc, w = self._fit_section(x[tr], dom[tr], k)
                ll = gmm_log_likelihood(torch.from_numpy(x[te]), torch.from_numpy(mu), torch.from_numpy(pc),
                                        torch.from_numpy(np.log(w)))
                out[te] = -ll.numpy()
        return torch.from_numpy(out)


def _tied_mixture(x: np.ndarray, dom: np.ndarray, covariance: str,
                  reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One component per domain (means = domain means), pooled within-domain covariance, equal
    weights; returned in sklearn's parameterisation (means, precisions_cholesky, weights)."""
    doms = np.unique(dom)
    means = np.stack([x[dom == d].mean(axis=0) for d in doms])
    resid = x - means[np.searchsorted(doms, dom)]
    n, dim = x.shape
    if covariance == "diag":
        var = (resid**2).sum(axis=0) / n + reg_covar
        pc = np.tile(1.0 / np.sqrt(var), (doms.size, 1))
    else:
        cov = resid.T @ resid / n + reg_covar * np.eye(dim)
        chol = np.linalg.cholesky(cov)
        pc_one = solve_triangular(chol, np.eye(dim), lower=True).T  # sklearn's precisions_cholesky_
        pc = np.tile(pc_one[None], (doms.size, 1, 1))
    return means, pc, np.full(doms.size, 1.0 / doms.size)

