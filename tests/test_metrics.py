"""DCASE 2022 metrics (SPEC §8) against hand counts and independent re-implementations."""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from dgmix.errors import InputError
from dgmix.metrics import (
    PAPER_RESULTS,
    ResultsTable,
    SectionResult,
    hmean,
    machine_summary,
    official_score,
    official_values,
    overall_summary,
    section_metrics,
)

EPS = sys.float_info.epsilon

# Hand example: per domain 3 normals + 2 anomalies.
SRC_NORMAL = [0.10, 0.40, 0.35]
SRC_ANOM = [0.80, 0.30]
TGT_NORMAL = [0.50, 0.20, 0.60]
TGT_ANOM = [0.70, 0.45]


def _hand_section():
    scores = np.array(SRC_NORMAL + SRC_ANOM + TGT_NORMAL + TGT_ANOM)
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 1])
    dom = np.array([0] * 5 + [1] * 5)
    return y, scores, dom


def pair_auc(neg, pos) -> float:
    """AUC by counting pairs: P(pos > neg) + 0.5 P(tie)."""
    neg = np.asarray(neg, float)
    pos = np.asarray(pos, float)
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(pos) * len(neg)))


def partial_auc_mcclish(neg, pos, max_fpr=0.1) -> float:
    """Independent pAUC: ROC points from all thresholds, area up to max_fpr, McClish-standardised."""
    neg = np.asarray(neg, float)
    pos = np.asarray(pos, float)
    thr = np.r_[np.inf, np.unique(np.r_[neg, pos])[::-1]]
    fpr = np.array([(neg >= t).mean() for t in thr])
    tpr = np.array([(pos >= t).mean() for t in thr])
    # area under the piecewise-linear ROC curve between fpr 0 and max_fpr
    area = 0.0
    for i in range(1, len(fpr)):
        x0, x1, y0, y1 = fpr[i - 1], fpr[i], tpr[i - 1], tpr[i]
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    min_area = 0.5 * max_fpr**2
    return 0.5 * (1 + (area - min_area) / (max_fpr - min_area))


def test_hand_counted_aucs():
    y, s, dom = _hand_section()
    r = section_metrics(y, s, dom)
    # AUC-S: source normals {.1,.4,.35} vs all anomalies {.8,.3,.7,.45}:
    # .1 < all 4; .4 < .8,.7,.45; .35 < .8,.7,.45  -> 10 of 12 pairs.
    assert r.auc_source == pytest.approx(10 / 12)
    # AUC-T: target normals {.5,.2,.6}: .5 < .8,.7; .2 < all 4; .6 < .8,.7 -> 8 of 12.
    assert r.auc_target == pytest.approx(8 / 12)
    # AUC(all): 6 normals x 4 anomalies -> 18 of 24.
    assert r.auc_all == pytest.approx(18 / 24)
    neg = SRC_NORMAL + TGT_NORMAL
    pos = SRC_ANOM + TGT_ANOM
    assert r.pauc == pytest.approx(partial_auc_mcclish(neg, pos, 0.1))
    assert r.pauc == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    assert r.hmean == pytest.approx(scipy.stats.hmean([10 / 12, 8 / 12, r.pauc]))
    assert not r.has_decisions


def test_hand_counted_decisions_evaluator_rule():
    y, s, dom = _hand_section()
    pred = (s > 0.42).astype(int)
    # source clips: scores .1 .4 .35 | .8 .3 -> pred 0 0 0 | 1 0: tp 1, fp 0, fn 1
    # target clips: scores .5 .2 .6 | .7 .45 -> pred 1 0 1 | 1 1: tp 2, fp 2, fn 0
    r = section_metrics(y, s, dom, pred)
    assert r.precision_source == pytest.approx(1.0)
    assert r.recall_source == pytest.approx(0.5)
    assert r.f1_source == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert r.precision_target == pytest.approx(0.5)
    assert r.recall_target == pytest.approx(1.0)
    assert r.f1_target == pytest.approx(2 * 0.5 / 1.5)


def test_no_positive_decision_gives_zero_not_nan():
    y, s, dom = _hand_section()
    r = section_metrics(y, s, dom, np.zeros(10, int))
    assert r.precision_source == 0.0 and r.recall_target == 0.0 and r.f1_source == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sections_against_pair_counting(seed):
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.integers(0, 2, n)
    dom = rng.integers(0, 2, n)
    y[:4] = [0, 0, 1, 1]
    dom[:4] = [0, 1, 0, 1]
    s = np.round(rng.normal(size=n) + 0.8 * y, 1)  # rounding makes ties
    r = section_metrics(y, s, dom)
    assert r.auc_source == pytest.approx(pair_auc(s[(y == 0) & (dom == 0)], s[y == 1]))
    assert r.auc_target == pytest.approx(pair_auc(s[(y == 0) & (dom == 1)], s[y == 1]))
    assert r.auc_all == pytest.approx(pair_auc(s[y == 0], s[y == 1]))
    assert r.pauc == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))


def test_pauc_mcclish_without_ties():
    rng = np.random.default_rng(5)
    y = np.r_[np.zeros(40, int), np.ones(25, int)]
    dom = np.r_[np.zeros(20, int), np.ones(20, int), np.zeros(12, int), np.ones(13, int)]
    s = rng.normal(size=65) + y
    r = section_metrics(y, s, dom)
    assert r.pauc == pytest.approx(partial_auc_mcclish(s[y == 0], s[y == 1]), abs=1e-12)


@pytest.mark.parametrize(
    "y, dom, empty, missing",
    [
        ([0, 0, 0, 0], [0, 1, 0, 1], ("anomalous",), ("auc_source", "auc_target", "pauc")),
        ([0, 1, 0, 1], [0, 0, 0, 1], ("target-domain normal",), ("auc_target",)),
        ([0, 1, 0, 1], [1, 1, 1, 0], ("source-domain normal",), ("auc_source",)),
        ([1, 1, 1, 1], [0, 1, 0, 1], ("source-domain normal", "target-domain normal"),
         ("auc_source", "auc_target", "pauc")),
    ],
)
def test_empty_groups_give_the_computable_metrics(y, dom, empty, missing):
    """Issue 15: a section without a group gets every value that can be computed (checked against
    sklearn on the clips each value uses), the others are None; F1 of an empty domain is None."""
    s = np.array([0.1, 0.2, 0.3, 0.4])
    ya, da = np.array(y), np.array(dom)
    r = section_metrics(y, s, dom, y_pred=[0, 1, 1, 0])
    assert r.empty_groups == empty and r.missing == missing
    for key in ("auc_source", "auc_target", "pauc"):
        assert (getattr(r, key) is None) == (key in missing)
    if r.auc_source is not None:
        sel = (da == 0) | (ya == 1)
        assert r.auc_source == pytest.approx(roc_auc_score(ya[sel], s[sel]))
    if r.auc_target is not None:
        sel = (da == 1) | (ya == 1)
        assert r.auc_target == pytest.approx(roc_auc_score(ya[sel], s[sel]))
    if r.pauc is not None:
        assert r.pauc == pytest.approx(roc_auc_score(ya, s, max_fpr=0.1))
    assert r.hmean == (None if len(missing) == 3 else pytest.approx(hmean(list(r.values.values()))))
    assert (r.f1_target is None) == (1 not in dom)
    # round trip through results.json keeps the n/a values and the empty groups
    assert SectionResult.from_dict(json.loads(json.dumps(r.as_dict()))) == r


def test_incomplete_sections_in_summaries_and_tables():
    """The official score averages over the values that exist, and the tables say which."""
    y, s, dom = _hand_section()
    full = section_metrics(y, s, dom)
    no_src = section_metrics(y[5:], s[5:], dom[5:])  # target clips only
    no_anom = section_metrics([0, 0], [0.1, 0.2], [0, 1])
    results = {"ToyTrain": {"00": no_src, "01": full}, "slider": {"00": no_anom}}
    vals = [full.auc_source, full.auc_target, full.pauc, no_src.auc_target, no_src.pauc]
    assert official_score(results) == pytest.approx(scipy.stats.hmean(vals))
    info = official_values(results)
    assert (info["n_values"], info["n_expected"]) == (5, 9)
    assert {(d["machine"], d["section"], d["value"]) for d in info["left_out"]} == {
        ("ToyTrain", "00", "auc_source"), ("slider", "00", "auc_source"), ("slider", "00", "auc_target"),
        ("slider", "00", "pauc")}
    row = machine_summary(results["slider"])
    assert (row.auc_source, row.auc_target, row.pauc, row.hmean, row.n_values) == (None, None, None, None, 0)
    row = machine_summary(results["ToyTrain"])
    assert row.auc_source == pytest.approx(full.auc_source)
    assert row.hmean == pytest.approx(scipy.stats.hmean(vals))
    table = ResultsTable()
    for machine, secs in results.items():
        table.add_machine("m", machine, secs)
    md = table.to_markdown()
    assert "| slider | n/a | n/a | n/a | n/a |" in md
    assert "over 5 of 9 values; n/a, left out: ToyTrain 00 AUC-S (no source-domain normal test clips); " \
           "slider 00 AUC-S, AUC-T, pAUC (no anomalous test clips)" in md
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert ["m", "slider", "00", "n/a", "n/a", "n/a", "n/a"] in rows
    data = table.to_json_dict()
    assert data["m"]["slider"]["00"]["auc_source"] is None
    assert data["m"]["official_score_values"]["n_values"] == 5
    back = ResultsTable.from_json_dict(json.loads(json.dumps(data)))
    assert back.official_score("m") == pytest.approx(table.official_score("m"))
    only_na = {"slider": {"00": no_anom}}
    assert official_score(only_na) is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="length mismatch"):
        section_metrics([0, 1, 0], [0.1, 0.2], [0, 0, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        section_metrics([0, 1, 0, 1], [0.1, np.nan, 0.2, 0.3], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="0/1"):
        section_metrics([0, 2, 0, 1], [0.1, 0.2, 0.2, 0.3], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="decisions"):
        section_metrics([0, 1, 0, 1], [0.1, 0.2, 0.2, 0.3], [0, 0, 1, 1], [0, 1])


def test_hmean_matches_scipy_with_epsilon_floor():
    rng = np.random.default_rng(0)
    v = rng.uniform(0.2, 1.0, 17)
    assert hmean(v) == pytest.approx(scipy.stats.hmean(v), rel=1e-12)
    with_zero = np.r_[v, 0.0]
    assert hmean(with_zero) == pytest.approx(scipy.stats.hmean(np.maximum(with_zero, EPS)))
    assert hmean(with_zero) < 1e-12
    with pytest.raises(ValueError):
        hmean([])
    with pytest.raises(ValueError):
        hmean([0.5, -0.1])


def _fake_results(seed=0):
    rng = np.random.default_rng(seed)
    res = {}
    for m in ["valve", "ToyCar", "fan"]:
        res[m] = {
            f"{s:02d}": SectionResult(*rng.uniform(0.4, 1.0, 3)) for s in range(3)
        }
    return res


def test_machine_and_overall_rows_and_official_score():
    res = _fake_results()
    secs = res["fan"].values()
    row = machine_summary(res["fan"])
    assert row.auc_source == pytest.approx(scipy.stats.hmean([r.auc_source for r in secs]))
    assert row.auc_target == pytest.approx(scipy.stats.hmean([r.auc_target for r in secs]))
    assert row.pauc == pytest.approx(scipy.stats.hmean([r.pauc for r in secs]))
    allv = [x for r in secs for x in (r.auc_source, r.auc_target, r.pauc)]
    assert row.hmean == pytest.approx(scipy.stats.hmean(allv))
    # the evaluator's official score: one list of all AUC-S, all AUC-T, all pAUC
    every = [r for m in res.values() for r in m.values()]
    perf = [r.auc_source for r in every] + [r.auc_target for r in every] + [r.pauc for r in every]
    off = official_score(res)
    assert off == pytest.approx(scipy.stats.hmean(np.maximum(perf, EPS)))
    ov = overall_summary(res)
    assert ov.hmean == pytest.approx(off)
    assert ov.auc_source == pytest.approx(scipy.stats.hmean([r.auc_source for r in every]))
    # equal section counts: the hmean of the three column hmeans is the official score
    assert scipy.stats.hmean([ov.auc_source, ov.auc_target, ov.pauc]) == pytest.approx(off)


def test_summary_decision_hmeans():
    y, s, dom = _hand_section()
    r = section_metrics(y, s, dom, (s > 0.42).astype(int))
    row = machine_summary({"00": r, "01": r})
    assert row.precision == pytest.approx(scipy.stats.hmean([1.0, 0.5, 1.0, 0.5]))
    assert machine_summary({"00": SectionResult(0.5, 0.5, 0.5)}).precision is None


def test_paper_results_are_consistent():
    # SPEC §9 overall rows
    spec = {
        "baseline": (64.73, 51.06, 55.80, 56.65),
        "scratch": (72.71, 70.93, 62.27, 68.32),
        "vicreg": (76.44, 68.78, 63.53, 69.18),
        "dgmix": (77.55, 74.08, 66.33, 72.34),
    }
    cols = ("auc_source", "auc_target", "pauc", "hmean")
    for method, vals in spec.items():
        ov = PAPER_RESULTS[method]["overall"]
        assert [round(100 * ov[c], 2) for c in cols] == list(vals)
    for method, rows in PAPER_RESULTS.items():
        assert len(rows) == 8
        for machine, row in rows.items():
            # each printed "Harmonic Mean" is the hmean of its row's three values (to rounding)
            h = scipy.stats.hmean([row["auc_source"], row["auc_target"], row["pauc"]])
            assert h == pytest.approx(row["hmean"], abs=1.5e-4), (method, machine)
    # overall columns = hmean over machines (not for "scratch", see PAPER_RESULTS docstring)
    for method in ("baseline", "vicreg", "dgmix"):
        rows = PAPER_RESULTS[method]
        for c in cols:
            h = scipy.stats.hmean([v[c] for k, v in rows.items() if k != "overall"])
            assert h == pytest.approx(rows["overall"][c], abs=1.5e-4), (method, c)


def test_results_table_files(tmp_path):
    res = _fake_results(3)
    t = ResultsTable()
    for m, secs in res.items():
        t.add_machine("dgmix", m, secs)
    t.add("other", "fan", "0", SectionResult(0.9, 0.8, 0.7))
    assert t.machines("dgmix") == ["ToyCar", "fan", "valve"]  # paper order
    paths = t.write(tmp_path, paper=PAPER_RESULTS)
    md = paths["md"].read_text()
    fan = t.machine_summary("dgmix", "fan")
    assert (f"| fan | {100 * fan.auc_source:.2f} | {100 * fan.auc_target:.2f} | "
            f"{100 * fan.pauc:.2f} | {100 * fan.hmean:.2f} |") in md
    assert "| ToyCar | 93.28 | 81.73 | 68.32 | 79.80 |" in md  # paper reference row
    assert f"**{100 * t.official_score('dgmix'):.2f}**" in md
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert list(rows[0]) == ["method", "machine", "section", "auc_source", "auc_target", "pauc",
                             "hmean"]
    assert len(rows) == 9 + 3 + 1 + 1 + 1 + 1
    r0 = next(r for r in rows if r["machine"] == "valve" and r["section"] == "01")
    assert float(r0["pauc"]) == pytest.approx(res["valve"]["01"].pauc, abs=1e-6)
    data = json.loads(paths["json"].read_text())
    assert set(data["dgmix"]) == {"ToyCar", "fan", "valve", "official_score", "official_score_values"}
    assert data["dgmix"]["official_score"] == pytest.approx(official_score(res))
    assert data["dgmix"]["fan"]["02"]["auc_target"] == pytest.approx(res["fan"]["02"].auc_target)
    assert data["other"]["fan"]["00"] == {"auc_source": 0.9, "auc_target": 0.8, "pauc": 0.7}
    back = ResultsTable.read_json(paths["json"])
    assert back.official_score("dgmix") == pytest.approx(t.official_score("dgmix"))


def test_results_json_errors(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"m": {"fan": {"00": {"auc_source": 0.5}}}}')
    with pytest.raises(InputError, match="missing section metric keys"):
        ResultsTable.read_json(bad)
    with pytest.raises(InputError, match="file not found"):
        ResultsTable.read_json(tmp_path / "nope.json")
