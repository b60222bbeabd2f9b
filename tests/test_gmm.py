"""Issue 14 back ends: the GMM scorer against scikit-learn, k-NN on standardised vectors against
sklearn's StandardScaler + NearestNeighbors, and bundle / ``dgmix score`` parity for both."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from dgmix.config import load_config
from dgmix.errors import InputError
from dgmix.pipeline import run_pipeline
from dgmix.scoring import KNNScorer, pool
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.gmm import GMMScorer


def _clusters(rng, n, d=6, centres=((0.0,),)):
    parts = [rng.normal(size=(n, d)) * (1 + rng.random(d)) + np.array(c) * 8 for c in centres]
    return np.concatenate(parts)


def _sk_bic_fit(x, cov, max_k, seed=0):
    fits = [GaussianMixture(k, covariance_type=cov, reg_covar=1e-6, random_state=seed).fit(x)
            for k in range(1, max_k + 1)]
    return min(fits, key=lambda g: g.bic(x))


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_gmm_scores_match_sklearn_per_section(cov):
    rng = np.random.default_rng(0)
    x0 = _clusters(rng, 40, centres=((0.0,), (1.0,)))  # two clusters: BIC should pick 2
    x1 = _clusters(rng, 30)
    x = torch.from_numpy(np.concatenate([x0, x1])).float()
    sec = [0] * len(x0) + [1] * len(x1)
    scorer = GMMScorer(pooling="mean", covariance=cov, max_components=3).fit(x, sec, [0] * len(sec))
    q = torch.from_numpy(rng.normal(size=(10, 6)) * 3).float()
    for s in (0, 1):
        ref = _sk_bic_fit(x.double().numpy()[np.array(sec) == s], cov, 3)
        assert int((scorer.comp_sections == s).sum()) == ref.n_components
        got = scorer.score(q, [s] * 10).numpy()
        np.testing.assert_allclose(got, -ref.score_samples(q.double().numpy()), rtol=1e-6)
    assert int((scorer.comp_sections == 0).sum()) == 2 and int((scorer.comp_sections == 1).sum()) == 1


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_tied_domain_mixture_matches_sklearn(cov):
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 5))
    tgt = rng.normal(size=(4, 5)) + 3.0
    x = np.concatenate([src, tgt])
    dom = np.array([0] * 30 + [1] * 4)
    scorer = GMMScorer(pooling="mean", covariance=cov, domain="tied").fit(torch.from_numpy(x), [0] * 34, dom)
    means = np.stack([src.mean(0), tgt.mean(0)])
    resid = x - means[dom]
    ref = GaussianMixture(2, covariance_type=cov)
    if cov == "diag":
        var = (resid**2).mean(0) + 1e-6
        ref.covariances_ = np.tile(var, (2, 1))
        ref.precisions_cholesky_ = 1 / np.sqrt(ref.covariances_)
    else:
        c = resid.T @ resid / len(x) + 1e-6 * np.eye(5)
        ref.covariances_ = np.stack([c, c])
        p = np.linalg.inv(np.linalg.cholesky(c)).T
        ref.precisions_cholesky_ = np.stack([p, p])
    ref.means_, ref.weights_ = means, np.array([0.5, 0.5])
    q = rng.normal(size=(8, 5)) * 2
    np.testing.assert_allclose(scorer.score(torch.from_numpy(q), [0] * 8).numpy(), -ref.score_samples(q),
                               rtol=1e-8)


def test_gmm_cross_fitted_training_scores():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 4))
    scorer = GMMScorer(pooling="mean", folds=3, max_components=1).fit(torch.from_numpy(x), [0] * 12)
    got = scorer.loo_scores(torch.from_numpy(x), [0] * 12).numpy()
    fold = np.arange(12) % 3
    for f in range(3):
        ref = GaussianMixture(1, covariance_type="diag", reg_covar=1e-6, random_state=0).fit(x[fold != f])
        np.testing.assert_allclose(got[fold == f], -ref.score_samples(x[fold == f]), rtol=1e-6)


def test_gmm_pools_windows_and_rejects_bad_input():
    rng = np.random.default_rng(3)
    clips = [torch.from_numpy(rng.normal(size=(int(rng.integers(5, 9)), 4))) for _ in range(10)]
    a = GMMScorer(pooling="gwrp", gwrp_r=0.0, max_components=1).fit(clips, [0] * 10)
    b = GMMScorer(pooling="max", max_components=1).fit(torch.stack([c.amax(0) for c in clips]), [0] * 10)
    np.testing.assert_allclose(a.score(clips[:3], [0] * 3).numpy(), b.score(torch.stack([c.amax(0) for c in clips[:3]]),
                                                                              [0] * 3).numpy(), rtol=1e-10)
    np.testing.assert_allclose(pool(clips[0], "gwrp", 0.0).numpy(), clips[0].amax(0).numpy())
    with pytest.raises(ValueError, match="at least 2"):
        GMMScorer(max_components=1).fit(torch.randn(3, 2), [0, 0, 1])
    with pytest.raises(ValueError, match="no mixture"):
        a.score(clips[:1], [5])
    with pytest.raises(ValueError, match="covariance"):
        GMMScorer(covariance="spherical")


def test_standardized_knn_matches_sklearn():
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(20, 5)) * np.array([1, 10, 100, 0.1, 1])
    sec = np.array([0] * 12 + [1] * 8)
    q = rng.normal(size=(6, 5)) * np.array([1, 10, 100, 0.1, 1])
    scorer = KNNScorer(k=3, standardize=True).fit(torch.from_numpy(bank), sec)
    for s in (0, 1):
        sc = StandardScaler().fit(bank[sec == s])
        nn = NearestNeighbors(n_neighbors=3).fit(sc.transform(bank[sec == s]))
        ref = nn.kneighbors(sc.transform(q))[0].mean(1)
        np.testing.assert_allclose(scorer.score(torch.from_numpy(q), [s] * 6).numpy(), ref, rtol=1e-6)
    loaded = KNNScorer.from_state_dict(scorer.state_dict())
    np.testing.assert_allclose(loaded.score(torch.from_numpy(q), [1] * 6), scorer.score(torch.from_numpy(q), [1] * 6))
    old = {k: v for k, v in KNNScorer().fit(torch.from_numpy(bank), sec).state_dict().items()
           if not k.startswith("std_")}  # a bank saved before issue 14
    assert KNNScorer.from_state_dict(old).is_fitted


def test_config_options_validated():
    cfg = load_config("tiny", overrides={"scoring": {"gwrp_r": 0.0, "backend": "gmm"}})
    assert cfg.scoring.gwrp_r == 0.0
    with pytest.raises(InputError, match="window_level"):
        load_config("tiny", overrides={"scoring": {"backend": "gmm", "window_level": True}})
    with pytest.raises(InputError, match="gmm_reg_covar"):
        load_config("tiny", overrides={"scoring": {"gmm_reg_covar": 0.0}})


def _rows(path):
    with open(path) as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("scoring", [
    {"backend": "gmm", "pooling": "gwrp", "gwrp_r": 0.5, "gmm_domain": "tied"},
    {"backend": "gmm", "pooling": "max", "gmm_covariance": "full"},
    {"backend": "knn", "pooling": "max", "k": 3, "standardize": True, "domain_aware": True},
])
def test_bundle_and_score_cli_parity(scoring, tiny_synth, feature_cache, tmp_path):
    from typer.testing import CliRunner

    from dgmix.cli import app

    cfg = load_config("tiny", overrides={"scoring": {"per_method": {"logmel": scoring}}})
    run_pipeline(tiny_synth, tmp_path, cfg, methods=["logmel"], cache_dir=feature_cache, progress=False,
                 echo=lambda s: None)
    path = tmp_path / "logmel" / "fan" / "detector.pt"
    bundle = DetectorBundle.load(path)
    assert type(bundle.scorer) is (GMMScorer if scoring["backend"] == "gmm" else KNNScorer)
    rows = _rows(tmp_path / "logmel" / "scores" / "anomaly_score_fan_section_00_test.csv")
    feats = [bundle.features_of(tiny_synth / "fan" / "test" / r[0]) for r in rows]
    got = bundle.score_features(feats, ["00"] * len(rows))
    np.testing.assert_allclose(got, [float(r[1]) for r in rows], rtol=1e-5, atol=1e-6)
    dec = _rows(tmp_path / "logmel" / "scores" / "decision_result_fan_section_00_test.csv")
    assert bundle.decide(got, ["00"] * len(rows)).tolist() == [int(r[1]) for r in dec]
    assert np.isfinite(bundle.thresholds.numpy()).all()
    clip = tiny_synth / "fan" / "test" / rows[0][0]
    res = CliRunner().invoke(app, ["score", str(path), str(clip), "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    assert float(_rows(tmp_path / "s.csv")[0][1]) == pytest.approx(float(rows[0][1]), rel=1e-5)
