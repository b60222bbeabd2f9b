"""Jackknife confidence intervals (dgmix.metrics.confidence) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from dgmix.metrics.confidence import SectionScores, evaluator_ci95, jackknife, official_score_ci


def _section(rng, n_per_group=6, shift=1.0):
    y = np.repeat([0, 0, 1, 1], n_per_group)
    t = np.tile(np.repeat([0, 1], n_per_group), 2)
    s = rng.normal(size=y.size) + shift * y
    return SectionScores(y, s, t)


def test_jackknife_of_the_mean_is_the_t_interval():
    # for the sample mean the jackknife standard error is s / sqrt(n) exactly
    x = np.random.default_rng(0).normal(3.0, 2.0, size=40)
    loo = [(x.sum() - v) / (x.size - 1) for v in x]
    ci = jackknife(x.mean(), loo)
    lo, hi = scipy.stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    assert ci.low == pytest.approx(lo, rel=1e-10) and ci.high == pytest.approx(hi, rel=1e-10)
    assert ci.jackknife == pytest.approx(x.mean())  # the mean has no jackknife bias correction
    assert ci.n == 40


def test_official_score_ci_against_direct_leave_one_out():
    rng = np.random.default_rng(1)
    secs = [_section(rng), _section(rng, shift=0.5)]

    def score(parts):
        vals = []
        for y, s, t in parts:
            src, tgt = (t == 0) | (y == 1), (t == 1) | (y == 1)
            vals += [roc_auc_score(y[src], s[src]), roc_auc_score(y[tgt], s[tgt]),
                     roc_auc_score(y, s, max_fpr=0.1)]
        return scipy.stats.hmean(vals)

    parts = [(x.y_true, x.y_score, x.is_target) for x in secs]
    full = score(parts)
    loo = []
    for k, (y, s, t) in enumerate(parts):
        for i in range(y.size):
            m = np.arange(y.size) != i
            loo.append(score([p if j != k else (y[m], s[m], t[m]) for j, p in enumerate(parts)]))
    loo = np.array(loo)
    n = loo.size
    se = np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))  # textbook jackknife standard error
    ci = official_score_ci(secs)
    assert ci.estimate == pytest.approx(full, abs=1e-12)
    assert ci.std_error == pytest.approx(se, rel=1e-9)
    assert ci.half_width == pytest.approx(scipy.stats.t.ppf(0.975, n - 1) * se, rel=1e-9)
    assert ci.low < full < ci.high and ci.n == 48


def test_fewer_clips_wider_interval():
    rng = np.random.default_rng(2)
    small = official_score_ci([_section(rng, 4)])
    large = official_score_ci([_section(rng, 40)])
    assert small.half_width > large.half_width > 0


def test_single_anomaly_group_is_an_error():
    y = np.array([0, 0, 0, 1])
    t = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="undefined"):
        official_score_ci([SectionScores(y, np.arange(4.0), t)])


def test_evaluator_number_is_n_minus_1_times_narrower():
    rng = np.random.default_rng(3)
    sec = _section(rng, 10)
    y, s = sec.y_true, sec.y_score
    n = y.size
    halves = []
    for fn in (lambda a, b: roc_auc_score(a, b), lambda a, b: roc_auc_score(a, b, max_fpr=0.1)):
        loo = [fn(np.delete(y, i), np.delete(s, i)) for i in range(n)]
        halves.append(jackknife(fn(y, s), loo).half_width)
    assert evaluator_ci95(y, s) == pytest.approx(np.mean(halves) / (n - 1), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_fast_section_values_equal_sklearn(seed):
    from dgmix.metrics.confidence import _values
    from dgmix.metrics.dcase import section_metrics

    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    y = rng.integers(0, 2, n)
    t = rng.integers(0, 2, n)
    y[:4], t[:4] = [1, 0, 0, 1], [0, 0, 1, 1]  # every group present
    s = rng.normal(size=n) + y
    if seed % 2:
        s = np.round(s, 1)  # ties
    ref = section_metrics(y, s, t)
    np.testing.assert_allclose(_values(y, s, t), (ref.auc_source, ref.auc_target, ref.pauc), rtol=1e-12)
