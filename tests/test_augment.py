"""Mixup, pair sampling and SpecAugment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dgmix.augment import (
    PairSampler,
    SpecAugment,
    mix,
    mix_labels,
    sample_lambda,
    time_warp,
)


def test_lambda_distribution_is_beta_half_half() -> None:
    lam = sample_lambda(20_000, generator=torch.Generator().manual_seed(1234)).numpy()
    assert lam.shape == (20_000,) and lam.dtype == np.float32
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean() - 0.5) < 0.015
    # U shape: P(lam < 0.1) = (2/pi) asin(sqrt(0.1)) = 0.2048 for Beta(0.5, 0.5)
    p_low = stats.beta(0.5, 0.5).cdf(0.1)
    assert p_low == pytest.approx(0.2048, abs=1e-4)
    assert abs((lam < 0.1).mean() - p_low) < 0.015
    assert abs((lam > 0.9).mean() - p_low) < 0.015
    assert abs(((lam > 0.45) & (lam < 0.55)).mean() - (stats.beta(0.5, 0.5).cdf(0.55)
                                                        - stats.beta(0.5, 0.5).cdf(0.45))) < 0.01
    assert stats.kstest(lam, stats.beta(0.5, 0.5).cdf).pvalue > 1e-3


def test_lambda_reproducible() -> None:
    a = sample_lambda(7, generator=torch.Generator().manual_seed(3))
    b = sample_lambda(7, generator=torch.Generator().manual_seed(3))
    c = sample_lambda(7, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    n1 = sample_lambda(5, generator=np.random.default_rng(9))
    n2 = sample_lambda(5, generator=np.random.default_rng(9))
    torch.testing.assert_close(n1, n2)
    torch.manual_seed(11)
    g1 = sample_lambda(5)
    torch.manual_seed(11)
    torch.testing.assert_close(g1, sample_lambda(5))
    assert sample_lambda(6, generator=torch.Generator().manual_seed(0)).unique().numel() == 6  # one per pair
    with pytest.raises(ValueError, match="n must be"):
        sample_lambda(0)
    with pytest.raises(TypeError, match="generator"):
        sample_lambda(3, generator=42)  # type: ignore[arg-type]


def test_mix_broadcasts_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    x, xp = torch.randn(3, 1, 4, 5, generator=g), torch.randn(3, 1, 4, 5, generator=g)
    lam = torch.tensor([0.0, 0.25, 1.0])
    out = mix(x, xp, lam)
    for i in range(3):
        torch.testing.assert_close(out[i], lam[i] * x[i] + (1 - lam[i]) * xp[i])
    torch.testing.assert_close(out[0], xp[0])
    torch.testing.assert_close(out[2], x[2])
    torch.testing.assert_close(mix(x, xp, 0.3), 0.3 * x + 0.7 * xp)
    with pytest.raises(ValueError, match="lam"):
        mix(x, xp, torch.ones(2))
    with pytest.raises(ValueError, match="same shape"):
        mix(x, xp[:2], lam)


def test_mix_labels() -> None:
    lam = torch.tensor([0.2, 1.0, 0.5])
    t = mix_labels(torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0]), lam, n_classes=3)
    expected = torch.tensor([[0.2, 0.8, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    torch.testing.assert_close(t, expected)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        mix_labels(torch.tensor([3]), torch.tensor([0]), 0.5, n_classes=3)


def test_uniform_partners() -> None:
    """Default: X is the anchor and X' is uniform over the other windows: every ordered pair
    (i, j), i != j, of 5 windows is drawn with probability 1/20; the generator makes it reproducible."""
    sampler = PairSampler(5)
    idx = torch.arange(5).repeat(1000)
    a, b = sampler(idx, torch.Generator().manual_seed(0))
    assert torch.equal(a, idx) and b.dtype == torch.int64 and b.shape == idx.shape
    counts = np.zeros((5, 5))
    np.add.at(counts, (idx.numpy(), b.numpy()), 1)
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(5, dtype=bool)]
    assert stats.chisquare(off).pvalue > 1e-3 and off.min() > 0.7 * 250
    assert torch.equal(b, sampler(idx, torch.Generator().manual_seed(0))[1])
    assert not torch.equal(b, sampler(idx, torch.Generator().manual_seed(1))[1])
    with pytest.raises(ValueError, match="at least two windows"):
        PairSampler(1)


# 2 sections x (30 source + 6 target) windows
SECTIONS = np.repeat([0, 1], 36)
DOMAINS = np.tile(np.array([0] * 30 + [1] * 6), 2)


#: the two ways to draw: the host path's, and the fixed-shape one of the device path (CUDA graphs)
DRAWS = ["__call__", "draw_static"]


@pytest.mark.parametrize("draw", DRAWS)
def test_sections_keep_pairs_in_the_anchor_section(draw) -> None:
    sampler = PairSampler(72, sections=SECTIONS)
    idx = torch.arange(72).repeat(20)
    a, b = getattr(sampler, draw)(idx, torch.Generator().manual_seed(0))
    assert torch.equal(a, idx) and (a != b).all() and (SECTIONS[a.numpy()] == SECTIONS[b.numpy()]).all()
    with pytest.raises(ValueError, match="one entry per window"):
        PairSampler(72, sections=SECTIONS[:10])
    with pytest.raises(ValueError, match="single training window"):
        getattr(PairSampler(3, sections=[0, 0, 1]), draw)(torch.arange(3), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("draw", DRAWS)
@pytest.mark.parametrize("scope", ["section", "machine"])
def test_pair_type_shares_are_drawn_as_configured(scope, draw) -> None:
    shares = (0.2, 0.5, 0.3)
    sampler = PairSampler(72, sections=SECTIONS if scope == "section" else None, domains=DOMAINS, shares=shares)
    idx = torch.arange(72).repeat(200)
    a, b = getattr(sampler, draw)(idx, torch.Generator().manual_seed(3))
    da, db = DOMAINS[a.numpy()], DOMAINS[b.numpy()]
    kinds = np.where((da == 0) & (db == 0), 0, np.where((da == 1) & (db == 1), 2, 1))
    freq = np.bincount(kinds, minlength=3) / len(kinds)
    np.testing.assert_allclose(freq, shares, atol=0.015)
    assert (a != b).all()
    if scope == "section":
        assert (SECTIONS[a.numpy()] == SECTIONS[b.numpy()]).all()
        assert (SECTIONS[a.numpy()] == SECTIONS[idx.numpy()]).all()  # the anchor's section is kept
    # anchors whose domain fits the drawn type are kept as X
    src_anchor = DOMAINS[idx.numpy()] == 0
    assert (a.numpy()[src_anchor & (kinds == 0)] == idx.numpy()[src_anchor & (kinds == 0)]).all()
    # target x target pairs: X' uniform over the other target windows of the scope
    tt = torch.from_numpy(kinds == 2)
    assert (DOMAINS[b[tt].numpy()] == 1).all()
    with pytest.raises(ValueError, match="domain of every window"):
        PairSampler(72, shares=shares)
    with pytest.raises(ValueError, match="three non-negative"):
        PairSampler(72, domains=DOMAINS, shares=(1, -1, 1))


@pytest.mark.parametrize("shares", [(0.2, 0.5, 0.3), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), None])
def test_the_fixed_shape_draw_has_the_distribution_of_the_host_draw(shares) -> None:
    """draw_static (the device path, graph-safe) and __call__ (the host path) draw another random
    stream from one distribution: for every anchor, the counts of its (X, X') pairs over 3,000
    draws each pass a chi-square test of homogeneity. Three sections, one with a single target
    window (its target x target pairs fall back to a uniform partner) and one of three windows."""
    sections = np.repeat([0, 1, 2], [12, 12, 3])
    domains = np.r_[np.zeros(9), np.ones(3), np.zeros(11), np.ones(1), 0, 1, 1].astype(int)
    sampler = PairSampler(27, sections=sections, domains=domains, shares=shares)
    idx = torch.arange(27).repeat(3000)
    draws = [getattr(sampler, d)(idx, torch.Generator().manual_seed(5)) for d in DRAWS]
    pvalues = []
    for anchor in range(27):
        at = (idx == anchor).numpy()
        keys = [a.numpy()[at] * 27 + b.numpy()[at] for a, b in draws]
        cells = np.union1d(*keys)
        table = np.array([[np.sum(k == c) for c in cells] for k in keys])
        if len(cells) > 1:
            pvalues.append(stats.chi2_contingency(table).pvalue)
        for k in keys:  # both windows in the anchor's section, and two different windows
            assert (sections[k // 27] == sections[anchor]).all() and (sections[k % 27] == sections[anchor]).all()
            assert ((k // 27) != (k % 27)).all()
    # 27 tests at a fixed seed: none far in the tail (a wrong distribution gives p ~ 0 at this size)
    assert min(pvalues) > 1e-4, min(pvalues)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_specaugment_with_a_cuda_generator_stays_on_the_device() -> None:
    """The device path's SpecAugment (a CUDA generator, no host synchronisation): the masks and the
    per-sample mean fill of the CPU version, reproducible from the generator's seed."""
    x = (torch.randn(16, 1, 128, 64, generator=torch.Generator().manual_seed(0)) * 10 - 40).cuda()
    aug = SpecAugment(time_warp=0)
    out = aug(x, generator=torch.Generator(device="cuda").manual_seed(5))
    assert out.device.type == "cuda"
    torch.testing.assert_close(out, aug(x, generator=torch.Generator(device="cuda").manual_seed(5)))
    changed = (out != x).cpu()
    for i in range(16):
        m = changed[i, 0]
        assert torch.equal(m, m.all(dim=1)[:, None] | m.all(dim=0)[None, :])
        torch.testing.assert_close(out[i, 0][m.cuda()], x[i].mean().expand(int(m.sum())))
    assert changed.any()
    warped = SpecAugment()(x, generator=torch.Generator(device="cuda").manual_seed(6))
    assert warped.device.type == "cuda" and warped.shape == x.shape


def test_time_warp_matches_numpy_interp() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 4, 20, generator=g, dtype=torch.float64)
    centre, shift = torch.tensor([5, 10, 14]), torch.tensor([3, -4, 0])
    out = time_warp(x, centre, shift)
    t = np.arange(20.0)
    for i in range(3):
        c, d = float(centre[i]), float(centre[i] + shift[i])
        src = np.interp(t, [0.0, d, 19.0], [0.0, c, 19.0])  # piecewise-linear map
        for f in range(4):
            ref = np.interp(src, t, x[i, 0, f].numpy())
            np.testing.assert_allclose(out[i, 0, f].numpy(), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[2], x[2])  # zero shift = identity
    with pytest.raises(ValueError, match="lie in"):
        time_warp(x, torch.tensor([0, 5, 5]), torch.tensor([0, 0, 0]))


def test_specaugment_masks() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 128, 64, generator=g) * 10 - 40
    aug = SpecAugment(time_warp=0, freq_mask=16, time_mask=8, n_freq_masks=2, n_time_masks=2)
    out = aug(x, generator=torch.Generator().manual_seed(5))
    assert out.shape == x.shape
    changed = out != x
    n_masked_rows = []
    for i in range(64):
        m = changed[i, 0]
        rows = m.all(dim=1)  # fully masked mel bins
        cols = m.all(dim=0)  # fully masked frames
        # every changed entry lies in a fully masked row or column
        assert torch.equal(m, rows[:, None] | cols[None, :])
        assert rows.sum() <= 2 * 16 and cols.sum() <= 2 * 8
        mean = x[i].mean()
        torch.testing.assert_close(out[i, 0][m], mean.expand(int(m.sum())))
        n_masked_rows.append(int(rows.sum()))
    assert max(n_masked_rows) > 0  # masks really happen
    torch.testing.assert_close(out, aug(x, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(out, aug(x, generator=torch.Generator().manual_seed(6)))


def test_specaugment_warp() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 16, 64, generator=g)
    warp_only = SpecAugment(time_warp=5, freq_mask=0, time_mask=0)
    out = warp_only(x, generator=torch.Generator().manual_seed(2))
    assert out.shape == x.shape
    torch.testing.assert_close(out[..., 0], x[..., 0])  # end frames stay in place
    torch.testing.assert_close(out[..., -1], x[..., -1])
    assert not torch.equal(out, x)
    # a warp of at most W frames keeps each frame's source within W frames: check on a ramp
    ramp = torch.arange(64.0).expand(8, 1, 16, 64).contiguous()
    warped = warp_only(ramp, generator=torch.Generator().manual_seed(3))
    assert (warped - ramp).abs().max() <= 5 + 1e-5
    with pytest.raises(ValueError, match=r"\(N, C, F, T\)"):
        SpecAugment()(torch.randn(16, 64))


def test_specaugment_defaults_are_the_module_constants() -> None:
    from dgmix.augment import specaugment as sa

    aug = SpecAugment()
    assert (sa.TIME_WARP, sa.FREQ_MASK, sa.TIME_MASK, sa.N_FREQ_MASKS, sa.N_TIME_MASKS) == (5, 16, 8, 2, 2)
    assert (aug.time_warp, aug.freq_mask, aug.time_mask, aug.n_freq_masks, aug.n_time_masks) == (5, 16, 8, 2, 2)
