"""The label-free choice of a detector's scoring (``scoring.select: pseudo``): the generic
pseudo-anomalies, the stratified folds, the choice against an independent reference (scikit-learn
1-NN + roc_auc_score + scipy's harmonic mean), that no test clip takes part, and the run / detector /
``dgmix score`` path of the chosen detector."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from dgmix.candidates import SCORING_CANDIDATES, candidate_fields
from dgmix.config import load_config
from dgmix.errors import InputError
from dgmix.methods import selection
from dgmix.methods.selection import fold_ids, held_out, select_scoring
from dgmix.pipeline import run_pipeline
from dgmix.scoring.detector import Detector
from dgmix.scoring.pseudo import SCOPES, PseudoAnomalies, draw_pseudo_anomalies, make_pseudo_anomalies, perturb


def frames(f):
    """The logmel detector's window outputs: a clip's frames, (T, n_mels)."""
    return torch.from_numpy(np.ascontiguousarray(f)).T

# -- pseudo-anomalies ------------------------------------------------------------------------------


def test_pseudo_anomalies_change_one_region_by_the_gain():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 50)).astype(np.float32) * 5 - 40
    out = make_pseudo_anomalies(x, np.random.default_rng(1))
    assert [(p.scope, p.gain_db > 0) for p, _ in out] == [(s, up) for s in SCOPES for up in (True, False)]
    for p, y in out:
        assert 3.0 <= abs(p.gain_db) <= 9.0
        assert 2 <= p.hi - p.lo <= 16  # 1/16 .. 1/2 of 32 bins
        diff = y - x
        frames = list(range(50)) if p.frames is None else list(p.frames)
        region = np.zeros_like(x, dtype=bool)
        region[p.lo:p.hi, frames] = True
        np.testing.assert_allclose(diff[region], p.gain_db, atol=1e-5)
        assert np.all(diff[~region] == 0)
        if p.scope == "events":  # the band's loudest frames, computed independently
            level = x[p.lo:p.hi].mean(axis=0)
            assert set(frames) == set(np.argsort(level)[::-1][:len(frames)].tolist())
            assert 1 <= len(frames) <= 10
        if p.scope == "span":
            assert frames == list(range(frames[0], frames[0] + len(frames)))
    again = make_pseudo_anomalies(x, np.random.default_rng(1))
    assert [p for p, _ in again] == [p for p, _ in out]


def test_pseudo_input_is_checked():
    with pytest.raises(ValueError, match="n_mels, T"):
        make_pseudo_anomalies(np.zeros(10), np.random.default_rng(0))
    p = PseudoAnomalies().draw(np.zeros((4, 3)), "events", 1, np.random.default_rng(0))
    assert p.frames is not None and 1 <= len(p.frames) <= 3
    assert perturb(np.zeros((4, 3)), p).dtype == np.float32


# -- grid, folds, config ---------------------------------------------------------------------------


def test_candidate_grid():
    assert len(SCORING_CANDIDATES) == 70 and SCORING_CANDIDATES[0] == "max/1nn/none"
    assert candidate_fields("gwrp0.5/gauss-lw/domain") == {
        "pooling": "gwrp", "gwrp_r": 0.5, "backend": "gauss-lw", "per_domain": True}
    assert candidate_fields("max/3nn-std/none")["per_domain"] is False
    with pytest.raises(ValueError, match="pooling/backend/domain"):
        candidate_fields("max/5nn/none")


def test_select_config_is_validated():
    cfg = load_config("tiny", overrides={"scoring": {"select": "pseudo", "select_candidates": ["mean/1nn/none"]}})
    assert cfg.scoring.select == "pseudo"
    with pytest.raises(InputError, match="unknown candidate"):
        load_config("tiny", overrides={"scoring": {"select_candidates": ["max/9nn/none"]}})
    with pytest.raises(InputError, match="per_method.logmel.select_candidates"):
        load_config("tiny", overrides={"scoring": {"per_method": {"logmel": {"select_candidates": ["x"]}}}})
    with pytest.raises(InputError, match="select_repeats"):
        load_config("tiny", overrides={"scoring": {"select_repeats": 0}})
    with pytest.raises(InputError, match="backend: unknown back end 'gmm-full'"):
        load_config("tiny", overrides={"scoring": {"backend": "gmm-full"}})


def test_folds_are_stratified_and_seeded():
    sec = np.repeat([0, 1], [23, 11])
    dom = np.r_[np.zeros(20), np.ones(3), np.zeros(9), np.ones(2)].astype(int)
    f = fold_ids(sec, dom, 5, seed=3)
    assert set(f.tolist()) == set(range(5))
    for s in (0, 1):
        for d in (0, 1):
            counts = np.bincount(f[(sec == s) & (dom == d)], minlength=5)
            assert counts.max() - counts.min() <= 1
    assert np.array_equal(f, fold_ids(sec, dom, 5, seed=3))
    assert not np.array_equal(f, fold_ids(sec, dom, 5, seed=4))


# -- the choice ------------------------------------------------------------------------------------


def _clicky_clips(n, seed, n_mels=16, frames=120):
    """Noise floor with a few loud clicks per clip (dB)."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        x = rng.normal(-60, 3, size=(n_mels, frames))
        at = rng.choice(frames, size=4, replace=False)
        x[:, at] = -20 + rng.normal(0, 1, size=(n_mels, 4))
        clips.append(x.astype(np.float32))
    return clips


def _reference_score(clips, sec, dom, pooling, folds, seed, repeats):
    """The rule for a 1-NN candidate, rebuilt from numpy, scikit-learn and scipy (every clip held out)."""
    poolf = {"max": lambda c: c.max(axis=1), "mean": lambda c: c.mean(axis=1)}[pooling]
    aucs = {}
    for rep in range(repeats):
        rep_seed = seed if rep == 0 else [seed, rep]
        fold = fold_ids(sec, dom, folds, rep_seed)
        rng = np.random.default_rng(rep_seed)
        held = held_out(fold, sec, dom, folds, 10**6, rng)
        assert list(held) == list(range(len(clips)))
        pseudo = [make_pseudo_anomalies(clips[i], rng) for i in held]
        normal, anom = {}, {}
        for f in range(folds):
            for s_id in np.unique(sec[fold == f]):
                bank = np.flatnonzero((fold != f) & (sec == s_id))
                nn = NearestNeighbors(n_neighbors=1).fit(np.stack([poolf(clips[i]) for i in bank]))
                for i in np.flatnonzero((fold == f) & (sec == s_id)):
                    normal[i] = nn.kneighbors(poolf(clips[i])[None])[0][0, 0]
                    for p, x in pseudo[i]:
                        same = np.array_equal(poolf(x), poolf(clips[i]))
                        anom[i, p.scope, p.gain_db] = normal[i] if same else nn.kneighbors(poolf(x)[None])[0][0, 0]
        for s_id in np.unique(sec):
            for d in np.unique(dom):
                rows = np.flatnonzero((sec == s_id) & (dom == d))
                for scope in SCOPES:
                    a = [v for (i, sc, _), v in anom.items() if i in rows and sc == scope]
                    y = np.r_[np.zeros(len(rows)), np.ones(len(a))]
                    key = ("source", "target")[d] + "/" + scope
                    aucs.setdefault(key, []).append(roc_auc_score(y, np.r_[[normal[i] for i in rows], a]))
    return hmean([np.mean(v) for v in aucs.values()])


@pytest.mark.parametrize("repeats", [1, 2])
def test_choice_matches_an_independent_reference(repeats, monkeypatch):
    monkeypatch.setattr(selection, "FOLDS", 3)
    monkeypatch.setattr(selection, "HELD_OUT", 10**6)
    clips = _clicky_clips(16, seed=0)
    sec = np.repeat([0, 1], 8)
    dom = np.array([0] * 6 + [1] * 2 + [0] * 6 + [1] * 2)
    sel = select_scoring(clips, sec, dom, None, candidates=["mean/1nn/none", "max/1nn/none"], seed=5,
                         repeats=repeats)
    got = {r.name: r for r in sel.results}
    for pooling in ("max", "mean"):
        r = got[f"{pooling}/1nn/none"]
        assert r.score == pytest.approx(_reference_score(clips, sec, dom, pooling, 3, 5, r.repeats), abs=1e-9)
        assert set(r.auc) == {f"{d}/{s}" for d in ("source", "target") for s in SCOPES}
    # successive halving: with two candidates, only the better one runs the second repeat
    assert sorted(r.repeats for r in sel.results) == ([1, 1] if repeats == 1 else [1, 2])
    assert sel.chosen == max((r for r in sel.results if r.repeats == repeats), key=lambda r: r.score).name
    assert sel.fields == candidate_fields(sel.chosen)
    assert sel.n_clips == 16 and sel.n_held_out == 16 * repeats and sel.n_pseudo == 16 * 6 * repeats


def test_held_out_clips_are_capped_per_group_and_fold():
    sec = np.repeat([0, 1], [500, 40])
    dom = np.r_[np.zeros(490), np.ones(10), np.zeros(36), np.ones(4)].astype(int)
    fold = fold_ids(sec, dom, 5, seed=1)
    held = held_out(fold, sec, dom, 5, 100, np.random.default_rng(0))
    assert np.all(np.diff(held) > 0)
    for s, d, want in ((0, 0, 100), (0, 1, 10), (1, 0, 36), (1, 1, 4)):
        rows = held[(sec[held] == s) & (dom[held] == d)]
        assert len(rows) == want
        assert np.bincount(fold[rows], minlength=5).max() <= 20


def test_rank_auc_is_roc_auc():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 30).astype(float), rng.integers(2, 8, 17).astype(float)  # many ties
    assert selection.rank_auc(a, b) == pytest.approx(roc_auc_score(np.r_[np.zeros(30), np.ones(17)], np.r_[a, b]))


def test_logmel_band_shortcut_equals_pooling_the_perturbed_clip():
    """The logmel path pools only a pseudo-anomaly's band rows; pooling its whole copy gives the same."""
    clip = _clicky_clips(1, seed=4)[0]
    names = ["max", "gwrp0.5", "gwrp0.9", "mean"]
    fast, full = selection._Pooler(names, None), selection._Pooler(names, lambda f: torch.from_numpy(f).T)
    clean = fast.clean(clip)
    assert torch.allclose(clean, full.clean(clip), rtol=0, atol=1e-4)
    for p in draw_pseudo_anomalies(clip, np.random.default_rng(9)):
        assert torch.allclose(fast.pseudo(clip, clean, p), full.pseudo(clip, clean, p), rtol=0, atol=1e-4)


def test_clicks_favour_max_pooling_for_event_changes():
    """Changes of the clicks' level are diluted by the mean over 120 frames and kept by the max."""
    clips = _clicky_clips(20, seed=1)
    sel = select_scoring(clips, np.zeros(20, int), np.zeros(20, int), frames,
                         candidates=["mean/1nn/none", "max/1nn/none"], seed=0)
    auc = {r.name: r.auc for r in sel.results}
    assert auc["max/1nn/none"]["source/events"] > auc["mean/1nn/none"]["source/events"] + 0.1


def test_choice_needs_two_clips_per_section_and_reports_failed_candidates(monkeypatch):
    clips = _clicky_clips(5, seed=2)
    with pytest.raises(ValueError, match="at least 2 training clips"):
        select_scoring(clips, np.array([0, 0, 0, 0, 1]), np.zeros(5, int), frames, candidates=["max/1nn/none"])
    plain = selection.make_backend

    def failing(name, *args):
        if name == "gmm-diag":
            raise ValueError("cannot fit this one\nsecond line")
        return plain(name, *args)

    monkeypatch.setattr(selection, "make_backend", failing)
    sel = select_scoring(clips, np.zeros(5, int), np.zeros(5, int), frames,
                         candidates=["max/gmm-diag/none", "max/1nn/none"])
    assert sel.chosen == "max/1nn/none"
    assert sel.results[0].score is None and sel.results[0].error == "cannot fit this one"


# -- the run path ----------------------------------------------------------------------------------

_CANDIDATES = ["max/1nn/none", "gwrp0.5/gmm-diag/none", "mean/1nn-std/domain", "max/gauss-lw/domain"]


def _rows(path):
    with open(path) as fh:
        return list(csv.reader(fh))


def test_run_chooses_on_training_clips_and_scores_with_the_choice(tiny_synth, feature_cache, tmp_path):
    from typer.testing import CliRunner

    from dgmix.cli import app

    scoring = {"select": "pseudo", "select_candidates": _CANDIDATES}
    cfg = load_config("tiny", overrides={"scoring": {"per_method": {"logmel": scoring}}})
    lines: list[str] = []
    run_pipeline(tiny_synth, tmp_path, cfg, methods=["logmel"], cache_dir=feature_cache, progress=False,
                 echo=lines.append)
    sel = json.loads((tmp_path / "logmel" / "fan" / "selection.json").read_text())
    assert [c["name"] for c in sel["candidates"]] == _CANDIDATES
    assert sel["chosen"] in _CANDIDATES and sel["folds"] == 5
    assert any("fan (1/1) logmel" in ln and f"scoring chosen on training clips: {sel['chosen']}" in ln
               for ln in lines)
    det = Detector.load(tmp_path / "logmel" / "fan" / "detector.pt")
    assert det.info.selection == sel
    want = candidate_fields(sel["chosen"])
    assert (det.info.pooling, det.info.backend, det.info.per_domain) == (
        want["pooling"], want["backend"], want["per_domain"])
    rows = _rows(tmp_path / "logmel" / "scores" / "anomaly_score_fan_section_00_test.csv")
    clip = tiny_synth / "fan" / "test" / rows[0][0]
    res = CliRunner().invoke(app, ["score", str(tmp_path / "logmel" / "fan" / "detector.pt"), str(clip),
                                   "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    assert float(_rows(tmp_path / "s.csv")[0][1]) == float(rows[0][1])


def test_choice_reads_no_test_clip(tiny_synth, feature_cache):
    from dgmix.data import scan
    from dgmix.methods import fit_detector, load_machine

    cfg = load_config("tiny")
    md = load_machine(scan(tiny_synth), "fan", cfg.features, feature_cache, progress=False)
    scoring = dataclasses.replace(cfg.scoring, select="pseudo", select_candidates=_CANDIDATES)
    first = fit_detector("logmel", md, cfg, scoring)
    rng = np.random.default_rng(0)
    md.test_feats = [rng.normal(size=f.shape).astype(np.float32) for f in md.test_feats]
    md.test = [dataclasses.replace(r, label="anomaly") for r in md.test]
    second = fit_detector("logmel", md, cfg, scoring)
    drop = {"seconds"}
    assert {k: v for k, v in first.info.selection.items() if k not in drop} == \
        {k: v for k, v in second.info.selection.items() if k not in drop}
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
