"""Scoring outputs: the gamma decision threshold and the official CSV formats."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from dgmix.errors import InputError
from dgmix.scoring import (
    decide,
    fit_gamma_threshold,
    fit_gamma_threshold_info,
    labels_from_names,
    read_decisions,
    read_ground_truth,
    read_scores,
    write_decisions,
    write_scores,
)

# ----------------------------------------------------------------------------- threshold


def test_gamma_threshold_vs_scipy():
    s = np.random.default_rng(0).gamma(2.0, 1.5, 300) + 0.3
    a, loc, scale = scipy.stats.gamma.fit(s)
    assert fit_gamma_threshold(s) == pytest.approx(scipy.stats.gamma.ppf(0.9, a, loc, scale))
    info = fit_gamma_threshold_info(s, 0.95)
    assert info.method == "gamma"
    assert info.threshold == pytest.approx(scipy.stats.gamma.ppf(0.95, a, loc, scale))


def test_a_gamma_fit_that_does_not_describe_the_scores_gives_way_to_the_quantile():
    """The free-loc MLE on these valve training scores (logmel, density NLLs) degenerates to shape
    ~0.11 with loc at the smallest score: its 90th percentile lies below 33 of the 34 scores."""
    valve = np.array([278.9, 282.0, 283.2, 285.1, 286.6, 290.8, 291.3, 292.2, 293.6, 293.7, 294.3, 295.8, 296.0,
                      302.6, 302.6, 303.6, 303.6, 308.4, 309.0, 313.6, 317.3, 320.6, 325.7, 329.6, 330.6, 334.3,
                      336.4, 338.4, 338.6, 347.3, 359.8, 375.5, 379.0, 471.3])
    shape, loc, scale = scipy.stats.gamma.fit(valve)
    assert shape < 0.5 and np.mean(valve > scipy.stats.gamma.ppf(0.9, shape, loc, scale)) > 0.9
    info = fit_gamma_threshold_info(valve)
    assert info.method == "quantile" and info.fallback_used
    assert info.threshold == np.quantile(valve, 0.9)


def test_gamma_threshold_degenerate_and_decide():
    assert fit_gamma_threshold([2.5, 2.5, 2.5]) == 2.5
    assert fit_gamma_threshold([4.0]) == 4.0
    with pytest.raises(ValueError):
        fit_gamma_threshold([1.0, np.nan])
    with pytest.raises(ValueError):
        fit_gamma_threshold([])
    out = decide([0.1, 0.5, 0.50001, 2.0], 0.5)
    assert out.tolist() == [0, 0, 1, 1] and out.dtype == np.int64


# ----------------------------------------------------------------------------- CSV


def test_score_and_decision_csv_byte_exact(tmp_path):
    names = ["/data/fan/test/section_00_source_test_normal_0000_x.wav",
             "section_00_target_test_anomaly_0001_y.wav"]
    p = write_scores(tmp_path, "fan", 0, names, np.array([0.25, 1.0 / 3.0]))
    assert p.name == "anomaly_score_fan_section_00_test.csv"
    assert p.read_bytes() == (b"section_00_source_test_normal_0000_x.wav,0.25\n"
                              b"section_00_target_test_anomaly_0001_y.wav,0.3333333333333333\n")
    got_names, got = read_scores(p)
    assert got_names == [n.split("/")[-1] for n in names]
    assert got.tolist() == [0.25, 1.0 / 3.0]
    q = write_decisions(tmp_path, "fan", "section_00", names, [0, 1])
    assert q.name == "decision_result_fan_section_00_test.csv"
    assert q.read_bytes() == (b"section_00_source_test_normal_0000_x.wav,0\n"
                              b"section_00_target_test_anomaly_0001_y.wav,1\n")
    assert read_decisions(q)[1].tolist() == [0, 1]


def test_csv_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_scores(tmp_path / "anomaly_score_fan_section_00_test.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a.wav,0.1\nb.wav,abc\n")
    with pytest.raises(InputError, match=r"bad.csv: line 2: score 'abc' is not a number"):
        read_scores(bad)
    bad.write_text("a.wav,0.1,3\n")
    with pytest.raises(InputError, match="expected 2 columns"):
        read_scores(bad)
    bad.write_text("a.wav,0.1\na.wav,0.2\n")
    with pytest.raises(InputError, match="more than once"):
        read_scores(bad)
    bad.write_text("a.wav,2\n")
    with pytest.raises(InputError, match="not 0 or 1"):
        read_decisions(bad)
    with pytest.raises(ValueError, match="finite"):
        write_scores(tmp_path, "fan", 0, ["a.wav"], [np.inf])
    with pytest.raises(ValueError, match="comma"):
        write_scores(tmp_path, "fan", 0, ["a,b.wav"], [1.0])


def test_ground_truth_layout_and_name_labels(tmp_path):
    (tmp_path / "ground_truth_data").mkdir()
    (tmp_path / "ground_truth_domain").mkdir()
    f = "ground_truth_valve_section_03_test.csv"
    (tmp_path / "ground_truth_data" / f).write_text(
        "section_03_0000.wav,1\nsection_03_0001.wav,0\nsection_03_0002.wav,0\n")
    (tmp_path / "ground_truth_domain" / f).write_text(
        "section_03_0002.wav,1\nsection_03_0000.wav,0\nsection_03_0001.wav,1\n")
    gt = read_ground_truth(tmp_path, "valve", "03")
    assert gt.names == ["section_03_0000.wav", "section_03_0001.wav", "section_03_0002.wav"]
    assert gt.is_anomaly.tolist() == [1, 0, 0]
    assert gt.is_target.tolist() == [0, 1, 1]
    with pytest.raises(InputError, match="ground_truth_data.*file not found"):
        read_ground_truth(tmp_path, "valve", "04")
    lab = labels_from_names(["section_01_target_test_anomaly_0003_a.wav",
                             "section_01_source_test_normal_0004_b.wav"])
    assert lab.is_anomaly.tolist() == [1, 0] and lab.is_target.tolist() == [1, 0]
    with pytest.raises(InputError, match="carries no domain/label"):
        labels_from_names(["section_03_0000.wav"], "x.csv")
