"""Mixup, pair sampling and SpecAugment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dgmix.augment import (
    PartnerSampler,
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


def test_lambda_reproducible_and_shared() -> None:
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
    shared = sample_lambda(6, per_sample=False, generator=torch.Generator().manual_seed(0))
    assert shared.shape == (6,) and torch.all(shared == shared[0])
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
    """Partners are uniform over the other windows: every ordered pair (i, j), i != j, of 5
    windows is drawn with probability 1/20, and the generator makes the draw reproducible."""
    sampler = PartnerSampler(5)
    idx = torch.arange(5).repeat(1000)
    b = sampler(idx, torch.Generator().manual_seed(0))
    assert b.dtype == torch.int64 and b.shape == idx.shape
    counts = np.zeros((5, 5))
    np.add.at(counts, (idx.numpy(), b.numpy()), 1)
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(5, dtype=bool)]
    assert stats.chisquare(off).pvalue > 1e-3 and off.min() > 0.7 * 250
    again = sampler(idx, torch.Generator().manual_seed(0))
    assert torch.equal(b, again)
    assert not torch.equal(b, sampler(idx, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="at least two windows"):
        PartnerSampler(1)


def test_domain_balanced_partners() -> None:
    domains = np.array([0] * 30 + [1] * 6)
    idx = torch.arange(36).repeat(50)
    g = torch.Generator().manual_seed(3)
    uniform = PartnerSampler(36, domains=domains)(idx, g)
    assert (uniform != idx).all()
    cross = PartnerSampler(36, domains=domains, cross_domain_p=1.0)(idx, g)
    assert (domains[idx.numpy()] != domains[cross.numpy()]).all()
    same = PartnerSampler(36, domains=domains, cross_domain_p=0.0)(idx, g)
    assert (domains[idx.numpy()] == domains[same.numpy()]).all() and (same != idx).all()
    # a target anchor's same-domain partner is uniform over the other 5 target windows
    t_counts = np.bincount(same[idx >= 30].numpy() - 30, minlength=6)
    assert t_counts.sum() == 300 and stats.chisquare(t_counts).pvalue > 1e-3
    big = torch.arange(36).repeat(400)
    half = PartnerSampler(36, domains=domains, cross_domain_p=0.5)(big, g)
    frac = (domains[big.numpy()] != domains[half.numpy()]).mean()
    assert abs(frac - 0.5) < 0.03
    with pytest.raises(ValueError, match="domain"):
        PartnerSampler(36, cross_domain_p=0.5)


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
    zero = SpecAugment(time_warp=0, mask_value=0.0)(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(zero == 0, changed)


def test_specaugment_warp_and_p() -> None:
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
    assert torch.equal(SpecAugment(p=0.0)(x, generator=torch.Generator().manual_seed(0)), x)
    with pytest.raises(ValueError, match=r"\(N, C, F, T\)"):
        SpecAugment()(torch.randn(16, 64))
