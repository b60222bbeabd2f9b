"""Density back ends (:mod:`dgmix.scoring.gmm`): NLL of ``gauss-lw`` against scikit-learn's
LedoitWolf + scipy's multivariate normal, ``gmm-diag`` against sklearn's GaussianMixture, the
per-domain mixture against scipy, cross-fitted training scores against a direct fold loop, and
readable scores where a section has fewer clips than dimensions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.covariance import LedoitWolf
from sklearn.mixture import GaussianMixture

from dgmix.scoring.backends import fit_backend, loo_scores, score_rows
from dgmix.scoring.gmm import GaussianDensity

pytestmark = pytest.mark.usefixtures("single_threaded")  # conftest.py

# ----------------------------------------------------------------------------- references


def sk_gmm(x: np.ndarray, seed: int, k: int | None = None) -> GaussianMixture:
    """sklearn's diagonal mixture with the lowest BIC among 1..min(4, n) components (or ``k``)."""
    ks = [k] if k else range(1, min(4, len(x)) + 1)
    fits = [GaussianMixture(j, covariance_type="diag", reg_covar=1e-6, random_state=seed).fit(x) for j in ks]
    return min(fits, key=lambda g: g.bic(x))


def ref_lw_nll(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    lw = LedoitWolf().fit(x)
    return -multivariate_normal.logpdf(q, lw.location_, lw.covariance_ + 1e-6 * np.eye(x.shape[1]))


def ref_domain_nll(x: np.ndarray, dom: np.ndarray, q: np.ndarray, kind: str) -> np.ndarray:
    """Equal-weight mixture of one Gaussian per domain present, covariance shared, estimated on the
    within-domain residuals (diagonal variance or Ledoit-Wolf, + 1e-6)."""
    groups = [x[dom == d] for d in sorted(set(dom.tolist()))]
    resid = np.concatenate([g - g.mean(0) for g in groups])
    if kind == "gmm-diag":
        cov = np.diag(resid.var(0) + 1e-6)  # residuals have zero mean: var == mean of squares
    else:
        cov = LedoitWolf(assume_centered=True).fit(resid).covariance_ + 1e-6 * np.eye(x.shape[1])
    logp = np.stack([multivariate_normal.logpdf(q, g.mean(0), cov) for g in groups])
    return -(logsumexp(logp, axis=0) - np.log(len(groups)))


def _data(seed=0, d=6):
    """Section 0: two well separated clusters (40 clips, a target domain of 6); section 1: 25
    source clips; section 2: 6 clips (fewer than the 10 folds), 2 of them target."""
    rng = np.random.default_rng(seed)
    scale = 1 + rng.random(d)
    s0 = np.concatenate([rng.normal(size=(17, d)) * scale, rng.normal(size=(17, d)) * scale + 8,
                         rng.normal(size=(6, d)) * 0.5 + 3])
    s1 = rng.normal(size=(25, d)) * scale - 2
    s2 = rng.normal(size=(6, d)) + 1
    x = np.concatenate([s0, s1, s2])
    sec = np.repeat([0, 1, 2], [40, 25, 6])
    dom = np.concatenate([np.zeros(34, int), np.ones(6, int), np.zeros(25, int), [0, 1, 0, 0, 1, 0]])
    order = np.r_[np.random.default_rng(1).permutation(40), 40 + np.arange(31)]  # target clips spread over folds
    q = rng.normal(size=(30, d)) * 3 + 2
    return x[order], sec, dom[order], q, np.tile([0, 1, 2], 10)


# ----------------------------------------------------------------------------- scores


def test_gauss_lw_nll_vs_scipy():
    x, sec, dom, q, qsec = _data()
    model = fit_backend("gauss-lw", False, torch.from_numpy(x), sec, dom, 3)
    got = score_rows(model, torch.from_numpy(q), qsec)
    for s in range(3):
        np.testing.assert_allclose(got[qsec == s], ref_lw_nll(x[sec == s], q[qsec == s]), rtol=1e-9)


def test_gmm_diag_nll_vs_sklearn():
    x, sec, dom, q, qsec = _data()
    model = fit_backend("gmm-diag", False, torch.from_numpy(x), sec, dom, 3, seed=3)
    out = model(torch.from_numpy(q), torch.tensor(0))
    assert out.dtype == torch.float64
    got = score_rows(model, torch.from_numpy(q), qsec)
    refs = [sk_gmm(x[sec == s], seed=3) for s in range(3)]
    assert refs[0].n_components >= 2  # the two clusters make it a mixture, not one Gaussian
    for s in range(3):
        np.testing.assert_allclose(got[qsec == s], -refs[s].score_samples(q[qsec == s]), rtol=1e-9)


@pytest.mark.parametrize("kind", ["gmm-diag", "gauss-lw"])
def test_per_domain_nll_vs_scipy(kind):
    x, sec, dom, q, qsec = _data()
    model = fit_backend(kind, True, torch.from_numpy(x), sec, dom, 3)
    got = score_rows(model, torch.from_numpy(q), qsec)
    for s in range(3):  # section 1 has no target clip: a single Gaussian
        m = sec == s
        np.testing.assert_allclose(got[qsec == s], ref_domain_nll(x[m], dom[m], q[qsec == s], kind), rtol=1e-9)


def ref_cross_fitted(x, sec, dom, kind, per_domain, seed):
    """Clip i of a section is in fold i % 10; each fold scored by a model fitted on the others
    (on all the section's clips when fewer than 2 remain or a domain of the fold would be missing)."""
    out = np.empty(len(x))
    for s in np.unique(sec):
        idx = np.flatnonzero(sec == s)
        k_all = sk_gmm(x[idx], seed).n_components
        for f in range(10):
            te = idx[np.arange(len(idx)) % 10 == f]
            if te.size == 0:
                continue
            tr = np.setdiff1d(idx, te)
            if tr.size < 2 or (per_domain and not set(dom[te]) <= set(dom[tr])):
                tr = idx
            if per_domain:
                out[te] = ref_domain_nll(x[tr], dom[tr], x[te], kind)
            elif kind == "gauss-lw":
                out[te] = ref_lw_nll(x[tr], x[te])
            else:
                out[te] = -sk_gmm(x[tr], seed, min(k_all, tr.size)).score_samples(x[te])
    return out


@pytest.mark.parametrize("per_domain", [False, True])
@pytest.mark.parametrize("kind", ["gmm-diag", "gauss-lw"])
def test_cross_fitted_scores_vs_fold_loop(kind, per_domain):
    x, sec, dom, _, _ = _data()
    # section 3: one target clip among 14: its fold falls back to a fit on all clips (per_domain)
    rng = np.random.default_rng(4)
    x = np.concatenate([x, rng.normal(size=(14, x.shape[1]))])
    sec, dom = np.r_[sec, np.full(14, 3)], np.r_[dom, np.eye(14, dtype=int)[5]]
    model = fit_backend(kind, per_domain, torch.from_numpy(x), sec, dom, 4, seed=2)
    got = loo_scores(model, torch.from_numpy(x), sec, dom)
    np.testing.assert_allclose(got, ref_cross_fitted(x, sec, dom, kind, per_domain, seed=2), rtol=1e-9)
    # held-out clips score worse than the same clips under the model that saw them
    seen = score_rows(model, torch.from_numpy(x), sec)
    assert np.median(got - seen) > 0


# ----------------------------------------------------------------------------- few clips, many dimensions


@pytest.mark.parametrize("per_domain", [False, True])
@pytest.mark.parametrize("kind", ["gmm-diag", "gauss-lw"])
def test_readable_scores_with_fewer_clips_than_dimensions(kind, per_domain):
    rng = np.random.default_rng(0)
    spread = 1 + rng.random(128)
    x = rng.normal(size=(12, 128)) * spread - 30  # log-mel-like levels
    q = rng.normal(size=(12, 128)) * spread - 30
    sec, dom = np.zeros(12, int), np.r_[np.zeros(10, int), np.ones(2, int)]
    # the premise: the sample covariance is singular, an unshrunk full Gaussian no density
    assert np.linalg.matrix_rank(np.cov(x, rowvar=False)) < 128
    model = GaussianDensity(kind, per_domain, seed=0).fit(torch.from_numpy(x), sec, dom, 1)
    got = score_rows(model, torch.from_numpy(q), np.zeros(12, int))
    train = model.loo_scores(torch.from_numpy(x), sec, dom)
    for scores in (got, train):
        assert np.isfinite(scores).all() and np.abs(scores).max() < 1e4
    if kind == "gauss-lw" and not per_domain:
        np.testing.assert_allclose(got, ref_lw_nll(x, q), rtol=1e-9)


def test_single_clip_section_rejected():
    x = np.random.default_rng(0).normal(size=(5, 3))
    for kind in ("gmm-diag", "gauss-lw"):
        with pytest.raises(ValueError, match="a density needs 2"):
            GaussianDensity(kind).fit(torch.from_numpy(x), np.array([0, 0, 0, 0, 1]), np.zeros(5, int), 2)
