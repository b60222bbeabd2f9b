"""Scoring back ends (paper §3.5): pooling, the k-NN banks, back-end names, state round trips and
the health check, each against an independent reference (numpy, scikit-learn). Densities:
tests/test_gmm.py; thresholds and CSV formats: tests/test_scoring_outputs.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from dgmix.candidates import parse_backend
from dgmix.scoring import pool
from dgmix.scoring.backends import fit_backend, loo_scores, make_backend, score_rows
from dgmix.scoring.gmm import GaussianDensity
from dgmix.scoring.health import MIN_SPREAD, check_health, health_message
from dgmix.scoring.knn import KNNBank

pytestmark = pytest.mark.usefixtures("single_threaded")  # conftest.py

# ----------------------------------------------------------------------------- pooling


def np_gwrp(x: np.ndarray, r: float) -> np.ndarray:
    srt = -np.sort(-x, axis=0)
    w = r ** np.arange(x.shape[0], dtype=np.float64)
    return (w[:, None] * srt).sum(0) / w.sum()


@pytest.mark.parametrize("method, r", [("mean", 0.9), ("max", 0.9), ("gwrp", 0.0), ("gwrp", 0.5), ("gwrp", 0.9),
                                       ("gwrp", 1.0)])
def test_pool_against_numpy(method, r):
    xn = np.random.default_rng(0).normal(size=(7, 5))
    ref = {"mean": xn.mean(0), "max": xn.max(0), "gwrp": np_gwrp(xn, r) if method == "gwrp" else None}[method]
    np.testing.assert_allclose(pool(torch.from_numpy(xn), method, r).numpy(), ref, rtol=1e-12)
    out32 = pool(torch.from_numpy(xn.astype(np.float32)), method, r)
    assert out32.dtype == torch.float32 and out32.shape == (5,)
    np.testing.assert_allclose(out32.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_gwrp_limits_and_unknown_pooling():
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(9, 4)))
    np.testing.assert_allclose(pool(x, "gwrp", 1.0).numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(pool(x, "gwrp", 0.0).numpy(), x.numpy().max(0), rtol=1e-12)
    for bad in ("median", "mean+max", "mean+std"):
        with pytest.raises(ValueError, match="unknown pooling"):
            pool(x, bad)


# ----------------------------------------------------------------------------- k-NN references


def ref_knn(bank: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Mean distance from each query to its min(k, N) nearest bank rows (scikit-learn)."""
    return NearestNeighbors(n_neighbors=min(k, len(bank))).fit(bank).kneighbors(q)[0].mean(1)


def ref_loo(bank: np.ndarray, k: int) -> np.ndarray:
    """Leave-one-out k-NN distance of each bank row to the other rows (brute force)."""
    d = np.linalg.norm(bank[:, None] - bank[None], axis=2)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, : min(k, len(bank) - 1)].mean(1)


def ref_standardize(train: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), np.maximum(train.std(0), 1e-6)
    return [(a - mu) / sd for a in arrays]


def _sections_data(seed=0, sizes=(30, 20), d=8, nq=9):
    """float32 clips of sections with different scales per dimension, queries interleaved."""
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(n, d)) * (0.5 + 3 * rng.random(d)) + s for s, n in enumerate(sizes)]
    q = [rng.normal(size=(nq, d)) * 2 + s for s in range(len(sizes))]
    sec = np.concatenate([np.full(n, s) for s, n in enumerate(sizes)])
    qsec = np.tile(np.arange(len(sizes)), nq)  # interleaved: score_rows has to split them
    qx = np.empty((nq * len(sizes), d))
    for s in range(len(sizes)):
        qx[qsec == s] = q[s]
    return np.concatenate(x).astype(np.float32), sec, qx.astype(np.float32), qsec


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_knn_scores_and_loo_vs_sklearn(k, standardize):
    x, sec, q, qsec = _sections_data()
    name = f"{k}nn" + ("-std" if standardize else "")
    bank = fit_backend(name, False, torch.from_numpy(x), sec, np.zeros(len(x), int), 2)
    assert isinstance(bank, KNNBank) and bank.settings() == {"k": k, "standardize": standardize, "per_domain": False}
    got = score_rows(bank, torch.from_numpy(q), qsec)
    got_loo = loo_scores(bank, torch.from_numpy(x), sec, np.zeros(len(x), int))
    for s in (0, 1):
        xs, qs = x[sec == s].astype(np.float64), q[qsec == s].astype(np.float64)
        if standardize:
            xs, qs = ref_standardize(xs, xs, qs)
        np.testing.assert_allclose(got[qsec == s], ref_knn(xs, qs, k), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_loo[sec == s], ref_loo(xs, k), rtol=1e-5, atol=1e-5)


def _domain_data(seed=2, d=6):
    """Section 0: 24 source + 5 target; section 1: 16 source + 1 target; section 2: 12 source only.
    Target clips are shifted and tighter than source ones, so the two banks' scales differ."""
    rng = np.random.default_rng(seed)
    xs, secs, doms = [], [], []
    for s, (n_src, n_tgt) in enumerate([(24, 5), (16, 1), (12, 0)]):
        xs += [rng.normal(size=(n_src, d)) * 2 + s, rng.normal(size=(n_tgt, d)) * 0.5 + s + 3]
        secs += [s] * (n_src + n_tgt)
        doms += [0] * n_src + [1] * n_tgt
    q = np.concatenate([rng.normal(size=(4, d)) * (2, 0.5)[i] + s + 3 * i for s in range(3) for i in range(2)])
    qsec = np.repeat(np.arange(3), 8)
    return np.concatenate(xs).astype(np.float32), np.array(secs), np.array(doms), q.astype(np.float32), qsec


def ref_per_domain(x, dom, q, k):
    """(query scores, leave-one-out scores, scales) of one section: min over domain banks of the
    k-NN distance divided by the bank's mean leave-one-out distance (numpy / scikit-learn)."""
    banks = {b: x[dom == b] for b in (0, 1) if (dom == b).any()}
    own = {b: ref_loo(v, k).mean() for b, v in banks.items() if len(v) >= 2}
    scale = {b: own.get(b, own.get(1 - b, 1.0)) for b in (0, 1)}
    fwd = np.min([ref_knn(v, q, k) / scale[b] for b, v in banks.items()], axis=0)
    loo = np.full(len(x), np.inf)
    for b, v in banks.items():
        other = ref_knn(v, x, k) / scale[b]
        if len(v) >= 2:  # a clip of this bank: its own row left out
            other[dom == b] = ref_loo(v, k) / scale[b]
        else:
            other[dom == b] = np.inf
        loo = np.minimum(loo, other)
    return fwd, loo, scale


@pytest.mark.parametrize("k, standardize", [(1, False), (3, True)])
def test_knn_per_domain_vs_numpy(k, standardize):
    x, sec, dom, q, qsec = _domain_data()
    bank = KNNBank(k, standardize, per_domain=True).fit(torch.from_numpy(x), sec, dom, 3)
    got = score_rows(bank, torch.from_numpy(q), qsec)
    got_loo = bank.loo_scores(torch.from_numpy(x), sec)
    for s in range(3):
        m = sec == s
        xs, qs = x[m].astype(np.float64), q[qsec == s].astype(np.float64)
        if standardize:
            xs, qs = ref_standardize(xs, xs, qs)
        fwd, loo, scale = ref_per_domain(xs, dom[m], qs, k)
        np.testing.assert_allclose(bank.scales[s].numpy(), [scale[0], scale[1]], rtol=1e-5)
        np.testing.assert_allclose(got[qsec == s], fwd, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_loo[m], loo, rtol=1e-5, atol=1e-5)
    # a bank of one clip (section 1's target) and a missing bank (section 2's) take the source scale
    assert bank.scales[1, 1].item() == bank.scales[1, 0].item()
    assert bank.scales[2, 1].item() == bank.scales[2, 0].item()
    assert np.isfinite(got).all() and np.isfinite(got_loo).all()


@pytest.mark.parametrize("per_domain", [False, True])
def test_knn_loo_single_clip_section_raises(per_domain):
    x, sec, q, _ = _sections_data(sizes=(10, 1))
    bank = KNNBank(1, per_domain=per_domain).fit(torch.from_numpy(x), sec, np.zeros(len(x), int), 2)
    assert np.isfinite(score_rows(bank, torch.from_numpy(q), np.ones(len(q), int))).all()
    with pytest.raises(ValueError, match="single training clip"):
        bank.loo_scores(torch.from_numpy(x), sec)


# ----------------------------------------------------------------------------- back ends by name


@pytest.mark.parametrize("name, spec", [
    ("1nn", {"kind": "knn", "k": 1, "standardize": False}),
    ("3nn-std", {"kind": "knn", "k": 3, "standardize": True}),
    ("12nn", {"kind": "knn", "k": 12, "standardize": False}),
    ("gmm-diag", {"kind": "gmm-diag"}),
    ("gauss-lw", {"kind": "gauss-lw"}),
])
def test_parse_backend_good(name, spec):
    assert parse_backend(name) == spec
    backend = make_backend(name, per_domain=True, seed=5)
    if spec["kind"] == "knn":
        assert isinstance(backend, KNNBank)
        assert backend.settings() == {"k": spec["k"], "standardize": spec["standardize"], "per_domain": True}
    else:
        assert isinstance(backend, GaussianDensity)
        assert backend.settings() == {"kind": name, "per_domain": True, "seed": 5}


@pytest.mark.parametrize("name", ["0nn", "nn", "01nn", "3nn-mahal", "3NN", "knn", "gmm", "gmm-full", "", "1nn "])
def test_parse_backend_bad(name):
    with pytest.raises(ValueError, match="unknown back end"):
        parse_backend(name)
    with pytest.raises(ValueError):
        make_backend(name)


def test_bad_constructor_settings():
    with pytest.raises(ValueError):
        KNNBank(0)
    with pytest.raises(ValueError):
        GaussianDensity("gauss-full")


@pytest.mark.parametrize("name, per_domain", [("1nn", False), ("3nn-std", True), ("gmm-diag", False),
                                              ("gmm-diag", True), ("gauss-lw", True)])
def test_state_dict_round_trip(name, per_domain):
    x, sec, dom, q, qsec = _domain_data(d=5)
    fitted = fit_backend(name, per_domain, torch.from_numpy(x), sec, dom, 3, seed=1)
    buf = io.BytesIO()
    torch.save(fitted.state_dict(), buf)
    state = torch.load(io.BytesIO(buf.getvalue()))
    fresh = make_backend(name, per_domain, seed=1)
    for b, t in list(fresh._buffers.items()):  # as dgmix.scoring.detector._resize_buffers
        if t is not None and b in state:
            fresh._buffers[b] = torch.empty_like(state[b])
    fresh.load_state_dict(state)
    ref = score_rows(fitted, torch.from_numpy(q), qsec)
    assert np.isfinite(ref).all()
    np.testing.assert_array_equal(score_rows(fresh, torch.from_numpy(q), qsec), ref)


# ----------------------------------------------------------------------------- health check


def test_health_flags_identical_embeddings():
    v = np.tile(np.random.default_rng(0).normal(size=(1, 16)) + 1.0, (40, 1)).astype(np.float32)
    bank = KNNBank(1).fit(torch.from_numpy(v), np.zeros(40, int), np.zeros(40, int), 1)
    h = check_health(v, bank.loo_scores(torch.from_numpy(v), np.zeros(40, int)))
    assert not h["ok"] and h["embedding_spread"] < MIN_SPREAD
    assert "embeddings differ" in h["reason"]
    assert "degenerate detector" in health_message(h)


def test_health_passes_random_embeddings_and_flags_constant_scores():
    rng = np.random.default_rng(0)
    v = (rng.normal(size=(40, 16)) + 1.0).astype(np.float32)
    bank = KNNBank(1).fit(torch.from_numpy(v), np.zeros(40, int), np.zeros(40, int), 1)
    h = check_health(v, bank.loo_scores(torch.from_numpy(v), np.zeros(40, int)))
    assert h["ok"] and h["reason"] == "" and health_message(h) is None
    assert h["embedding_spread"] > 10 * MIN_SPREAD and h["score_spread"] > 10 * MIN_SPREAD
    flat = check_health(v, np.full(40, 2.5))
    assert not flat["ok"] and flat["score_spread"] < MIN_SPREAD and "scores differ" in flat["reason"]
