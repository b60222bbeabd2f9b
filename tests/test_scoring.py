"""Scoring (paper §3.5, SPEC §6): pooling, k-NN distances and KNNScorer (thresholds and CSV
formats: tests/test_scoring_outputs.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from dgmix.scoring import (
    KNNScorer,
    greedy_coreset,
    knn_distance,
    pool,
    pool_batch,
    random_subset,
)

# ----------------------------------------------------------------------------- pooling


def _windows(seed=0, w=7, d=5):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(w, d)))


def np_gwrp(x: np.ndarray, r: float) -> np.ndarray:
    srt = -np.sort(-x, axis=0)
    w = r ** np.arange(x.shape[0])
    return (w[:, None] * srt).sum(0) / w.sum()


def test_pool_methods_against_numpy():
    x = _windows()
    xn = x.numpy()
    np.testing.assert_allclose(pool(x, "mean").numpy(), xn.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pool(x, "max").numpy(), xn.max(0), rtol=1e-12)
    np.testing.assert_allclose(pool(x, "gwrp", 0.7).numpy(), np_gwrp(xn, 0.7), rtol=1e-12)
    np.testing.assert_allclose(pool(x, "mean+max").numpy(), np.r_[xn.mean(0), xn.max(0)])
    # GWRP limits: r = 1 is the mean, r = 0 the max
    np.testing.assert_allclose(pool(x, "gwrp", 1.0).numpy(), xn.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pool(x, "gwrp", 0.0).numpy(), xn.max(0), rtol=1e-12)


@pytest.mark.parametrize("method", ["mean", "max", "gwrp", "mean+max"])
def test_pool_batch_forms_agree(method):
    clips = [_windows(i, w=4 + i) for i in range(3)]
    ref = torch.stack([pool(c, method, 0.8) for c in clips])
    torch.testing.assert_close(pool_batch(clips, method, 0.8), ref)
    flat = torch.cat(clips)
    torch.testing.assert_close(pool_batch(flat, method, 0.8, lengths=[4, 5, 6]), ref)
    equal = torch.stack([_windows(i, w=6) for i in range(3)])
    torch.testing.assert_close(
        pool_batch(equal, method, 0.8), torch.stack([pool(c, method, 0.8) for c in equal])
    )


def test_pool_errors():
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(_windows(), "median")
    with pytest.raises(ValueError, match="no windows"):
        pool(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="lengths sum"):
        pool_batch(torch.zeros(5, 3), lengths=[2, 2])


# ----------------------------------------------------------------------------- knn_distance


def _data(seed, n, d=8):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))


@pytest.mark.parametrize("k", [1, 3])
def test_knn_distance_vs_sklearn(k):
    bank, q = _data(0, 200), _data(1, 50)
    nn_ = NearestNeighbors(n_neighbors=k).fit(bank.numpy())
    ref = nn_.kneighbors(q.numpy())[0].mean(1)
    np.testing.assert_allclose(knn_distance(q, bank, k).numpy(), ref, rtol=1e-4, atol=1e-5)
    # small blocks over queries and bank give the same result
    out = knn_distance(q, bank, k, chunk=7, bank_chunk=13)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_leave_one_out_vs_sklearn(k):
    bank = _data(2, 120)
    nn_ = NearestNeighbors(n_neighbors=k + 1).fit(bank.numpy())
    ref = nn_.kneighbors(bank.numpy())[0][:, 1:].mean(1)  # first neighbour is the point itself
    out = knn_distance(bank, bank, k, chunk=16, leave_one_out=True, bank_chunk=50)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_knn_group_exclusion_vs_numpy():
    bank, q = _data(3, 60).double(), _data(4, 20).double()
    bg = torch.arange(60) // 6
    qg = torch.arange(20) % 10
    d = np.linalg.norm(q.numpy()[:, None] - bank.numpy()[None], axis=2)
    d[qg.numpy()[:, None] == bg.numpy()[None]] = np.inf
    ref = np.sort(d, axis=1)[:, :2].mean(1)
    out = knn_distance(q, bank, 2, query_groups=qg, bank_groups=bg, bank_chunk=17)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)


def test_knn_partial_neighbours():
    bank = _data(5, 4).double()
    groups = torch.tensor([0, 0, 0, 1])
    d = np.linalg.norm(bank.numpy()[:, None] - bank.numpy()[None], axis=2)
    out = knn_distance(bank, bank, 3, query_groups=groups, bank_groups=groups, partial=True)
    # queries of group 0 only have the group-1 row; the group-1 query has three rows
    np.testing.assert_allclose(out.numpy()[:3], d[:3, 3], rtol=1e-10)
    assert out[3].item() == pytest.approx(d[3, :3].mean(), rel=1e-10)
    alone = knn_distance(bank[:1], bank[:1], 1, leave_one_out=False, query_groups=groups[:1],
                         bank_groups=groups[:1], partial=True)
    assert torch.isinf(alone).all()


def test_knn_errors():
    with pytest.raises(ValueError, match="usable"):
        knn_distance(_data(0, 5), _data(1, 3), k=4)
    with pytest.raises(ValueError, match="usable"):
        knn_distance(_data(0, 3), _data(0, 3), k=3, leave_one_out=True)
    with pytest.raises(ValueError, match="dimension"):
        knn_distance(_data(0, 5, 3), _data(1, 3, 4))


# ----------------------------------------------------------------------------- KNNScorer

D = 6


def _clips(seed, n_per, sections=(0, 1), target_every=4, w=5):
    """Window embeddings per clip with a section offset; every 4th clip is target-domain."""
    rng = np.random.default_rng(seed)
    clips, secs, doms = [], [], []
    for s in sections:
        for i in range(n_per):
            dom = int(i % target_every == 0)
            c = rng.normal(size=(w, D)) * 0.5 + s * 3 + dom * 1.5
            clips.append(torch.from_numpy(c))
            secs.append(f"{s:02d}")
            doms.append("target" if dom else "source")
    return clips, secs, doms


def _np_dist(q, b):
    return np.linalg.norm(q[:, None] - b[None], axis=2)


def test_scorer_default_is_per_section_1nn_of_mean_embeddings():
    train, tsec, tdom = _clips(0, 12)
    test, qsec, _ = _clips(1, 5)
    sc = KNNScorer().fit(train, tsec, tdom)
    out = sc.score(test, qsec).numpy()
    tm = np.stack([c.numpy().mean(0) for c in train])
    qm = np.stack([c.numpy().mean(0) for c in test])
    ts, qs = np.array(tsec), np.array(qsec)
    for s in ("00", "01"):
        ref = _np_dist(qm[qs == s], tm[ts == s]).min(1)
        np.testing.assert_allclose(out[qs == s], ref, rtol=1e-9)
    # a (C, D) tensor of pooled embeddings gives the same scores
    sc2 = KNNScorer().fit(torch.from_numpy(tm), tsec)
    np.testing.assert_allclose(sc2.score(torch.from_numpy(qm), qsec).numpy(), out, rtol=1e-9)


def test_scorer_k3_and_loo_scores():
    train, tsec, tdom = _clips(2, 10)
    sc = KNNScorer(k=3).fit(train, tsec, tdom)
    tm = np.stack([c.numpy().mean(0) for c in train])
    ts = np.array(tsec)
    loo = sc.loo_scores(train, tsec).numpy()
    for s in ("00", "01"):
        d = _np_dist(tm[ts == s], tm[ts == s])
        np.fill_diagonal(d, np.inf)
        np.testing.assert_allclose(loo[ts == s], np.sort(d, 1)[:, :3].mean(1), rtol=1e-9)


def test_scorer_domain_aware_vs_numpy():
    train, tsec, tdom = _clips(3, 16)
    test, qsec, _ = _clips(4, 6)
    sc = KNNScorer(k=2, domain_aware=True).fit(train, tsec, tdom)
    out = sc.score(test, qsec).numpy()
    tm = np.stack([c.numpy().mean(0) for c in train])
    qm = np.stack([c.numpy().mean(0) for c in test])
    ts, td, qs = np.array(tsec), np.array(tdom), np.array(qsec)
    for s in ("00", "01"):
        per_bank = []
        for dom in ("source", "target"):
            b = tm[(ts == s) & (td == dom)]
            dd = _np_dist(b, b)
            np.fill_diagonal(dd, np.inf)
            scale = np.sort(dd, 1)[:, :2].mean(1).mean()  # mean LOO 2-NN distance in the bank
            per_bank.append(np.sort(_np_dist(qm[qs == s], b), 1)[:, :2].mean(1) / scale)
        np.testing.assert_allclose(out[qs == s], np.minimum(*per_bank), rtol=1e-9)


def test_domain_aware_single_clip_bank_falls_back():
    train, tsec, tdom = _clips(5, 8, sections=(0,), target_every=100)
    tdom[0] = "target"  # exactly one target clip in the section
    sc = KNNScorer(domain_aware=True).fit(train, tsec, tdom)
    assert sc.scales[0, 1] == sc.scales[0, 0]  # target scale borrowed from source
    tm = np.stack([c.numpy().mean(0) for c in train])
    d = _np_dist(tm[1:], tm[1:])
    np.fill_diagonal(d, np.inf)
    assert float(sc.scales[0, 0]) == pytest.approx(d.min(1).mean())
    only = KNNScorer(domain_aware=True).fit(train[:1], tsec[:1], ["source"])
    assert float(only.scales[0, 0]) == 1.0
    # leave-one-out: the lone target clip can only match the source bank, the others both banks
    loo = sc.loo_scores(train, tsec).numpy()
    scale = float(sc.scales[0, 0])
    full = _np_dist(tm, tm)
    np.fill_diagonal(full, np.inf)
    assert loo[0] == pytest.approx(full[0, 1:].min() / scale, rel=1e-9)
    ref = np.minimum(full[1:, 1:].min(1), full[1:, 0]) / scale
    np.testing.assert_allclose(loo[1:], ref, rtol=1e-9)
    with pytest.raises(ValueError, match="no bank entry left"):
        only.loo_scores(train[:1], tsec[:1])


@pytest.mark.parametrize("agg", ["mean", "max", "topk-mean"])
def test_window_level_aggregation(agg):
    train, tsec, tdom = _clips(6, 6)
    test, qsec, _ = _clips(7, 3)
    sc = KNNScorer(window_level=True, aggregation=agg, topk_k=2).fit(train, tsec, tdom)
    out = sc.score(test, qsec).numpy()
    ts = np.array([s for c, s in zip(train, tsec, strict=True) for _ in range(c.shape[0])])
    tw = torch.cat(train).numpy()
    for i, (c, s) in enumerate(zip(test, qsec, strict=True)):
        wd = _np_dist(c.numpy(), tw[ts == s]).min(1)
        ref = {"mean": wd.mean(), "max": wd.max(), "topk-mean": np.sort(wd)[-2:].mean()}[agg]
        assert out[i] == pytest.approx(ref, rel=1e-9)
    # flat windows + groups (shuffled order) give the same scores
    flat = torch.cat(test)
    groups = torch.arange(len(test)).repeat_interleave(5)
    perm = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(sc.score(flat[perm], qsec, groups=groups[perm]).numpy(), out,
                               rtol=1e-9)


def test_window_level_loo_leaves_out_the_whole_clip():
    train, tsec, tdom = _clips(8, 5, sections=(0,))
    sc = KNNScorer(window_level=True).fit(train, tsec, tdom)
    loo = sc.loo_scores(train, tsec).numpy()
    tw = [c.numpy() for c in train]
    for i, c in enumerate(tw):
        others = np.concatenate([x for j, x in enumerate(tw) if j != i])
        assert loo[i] == pytest.approx(_np_dist(c, others).min(1).mean(), rel=1e-9)


def test_bank_reduction_sizes():
    train, tsec, tdom = _clips(9, 20)
    rnd = KNNScorer(bank_reduce="random", bank_size=7).fit(train, tsec, tdom)
    assert torch.bincount(rnd.bank_sections).tolist() == [7, 7]
    da = KNNScorer(bank_reduce="coreset", bank_size=4, domain_aware=True).fit(train, tsec, tdom)
    counts = {(int(s), int(d)): 0 for s in (0, 1) for d in (0, 1)}
    for s, d in zip(da.bank_sections.tolist(), da.bank_domains.tolist(), strict=True):
        counts[(s, d)] += 1
    assert counts == {(0, 0): 4, (0, 1): 4, (1, 0): 4, (1, 1): 4}  # 15 source, 5 target clips
    # kept entries are original embeddings
    tm = torch.stack([c.mean(0) for c in train])
    for row in rnd.bank:
        assert bool(((tm - row).abs().amax(1) < 1e-12).any())


def test_random_subset_distinct():
    idx = random_subset(50, 10, seed=3)
    assert idx.numel() == 10 and idx.unique().numel() == 10
    assert random_subset(5, 10).tolist() == [0, 1, 2, 3, 4]


def np_greedy(x, n, start):
    chosen = [start]
    md = ((x - x[start]) ** 2).sum(1)
    for _ in range(n - 1):
        i = int(np.argmax(md))
        chosen.append(i)
        md = np.minimum(md, ((x - x[i]) ** 2).sum(1))
    return chosen


def test_coreset_keeps_farthest_points_and_matches_numpy():
    rng = np.random.default_rng(0)
    cluster = rng.normal(size=(40, 5)) * 0.1
    outliers = np.eye(5)[:3] * np.array([[10.0], [20.0], [30.0]])
    x = np.concatenate([cluster, outliers])
    idx = greedy_coreset(torch.from_numpy(x), 4, start=0)
    assert set(idx.tolist()[1:]) == {40, 41, 42}  # the three far points, farthest first
    assert idx.tolist()[1] == 42
    x2 = rng.normal(size=(60, 4))
    assert greedy_coreset(torch.from_numpy(x2), 9, start=5).tolist() == np_greedy(x2, 9, 5)
    # with a random projection the outliers are still found
    idx_p = greedy_coreset(torch.from_numpy(x), 4, projection_dim=3, seed=1, start=0)
    assert set(idx_p.tolist()[1:]) == {40, 41, 42}


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"k": 2, "domain_aware": True},
        {"window_level": True, "aggregation": "topk-mean", "topk_k": 2,
         "bank_reduce": "coreset", "bank_size": 9},
    ],
)
def test_state_dict_round_trip(cfg):
    train, tsec, tdom = _clips(10, 8)
    test, qsec, _ = _clips(11, 3)
    sc = KNNScorer(**cfg).fit(train, tsec, tdom)
    ref = sc.score(test, qsec)
    buf = io.BytesIO()
    torch.save(sc.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    back = KNNScorer.from_state_dict(state)
    torch.testing.assert_close(back.score(test, qsec), ref, rtol=0, atol=0)
    fresh = KNNScorer()  # default config and empty buffers: load resizes and restores
    fresh.load_state_dict(state)
    assert fresh.config() == sc.config()
    torch.testing.assert_close(fresh.score(test, qsec), ref, rtol=0, atol=0)
    torch.testing.assert_close(fresh.loo_scores(train, tsec), sc.loo_scores(train, tsec))


def test_scorer_errors():
    train, tsec, _ = _clips(12, 4, sections=(0,))
    with pytest.raises(RuntimeError, match="not fitted"):
        KNNScorer().score(train, tsec)
    sc = KNNScorer().fit(train, tsec)
    with pytest.raises(ValueError, match="section 03 has no training"):
        sc.score(train[:1], ["03"])
    with pytest.raises(ValueError, match="domain"):
        KNNScorer(domain_aware=True).fit(train, tsec)
    with pytest.raises(ValueError, match="window_level"):
        KNNScorer(window_level=True).fit(torch.zeros(4, D), tsec)
    with pytest.raises(ValueError, match="aggregation"):
        KNNScorer(aggregation="median")


def test_mean_std_pooling_matches_numpy():
    import numpy as np
    import torch

    from dgmix.scoring.pooling import pool, pool_batch, pooled_dim

    rng = np.random.default_rng(3)
    w = rng.normal(size=(7, 5)).astype(np.float32)
    ref = np.concatenate([w.mean(axis=0), w.std(axis=0)])
    np.testing.assert_allclose(pool(torch.from_numpy(w), "mean+std").numpy(), ref, rtol=1e-5, atol=1e-6)
    batch = pool_batch(torch.from_numpy(np.stack([w, w[::-1].copy()])), "mean+std")
    np.testing.assert_allclose(batch[1].numpy(), ref, rtol=1e-5, atol=1e-6)
    assert pooled_dim(5, "mean+std") == 10
