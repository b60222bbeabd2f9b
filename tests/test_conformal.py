"""Conformal thresholds and p-values (dgmix.scoring.conformal), in the detector, `dgmix run`, `dgmix score`
and the ONNX export."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.scoring.conformal import (
    check_rate,
    conformal_threshold,
    p_values,
    pack_calibration,
    unpack_calibration,
)
from dgmix.scoring.detector import Detector


def test_threshold_is_the_order_statistic_of_the_rule():
    cal = np.arange(1.0, 101.0)[::-1]  # 100 scores, given unsorted
    fit = conformal_threshold(cal, 0.1)  # k = ceil(101 * 0.9) = 91
    assert fit.threshold == 91.0 and fit.n == 100 and fit.achieved == 0.1 and not fit.short
    assert conformal_threshold(np.arange(1.0, 100.0), 0.01).threshold == 99.0  # k = 99 = n: the largest
    assert conformal_threshold(np.arange(1.0, 20.0), 0.05).threshold == 19.0  # k = 19 = n


def test_too_few_clips_fall_back_to_the_largest_score_and_say_so():
    fit = conformal_threshold([3.0, 1.0, 2.0], 0.05)
    assert fit.threshold == 3.0 and fit.short and fit.achieved == pytest.approx(0.25)


@pytest.mark.parametrize("n,rate", [(9, 0.1), (39, 0.1), (59, 0.05), (30, 0.2)])
def test_false_alarm_rate_of_exchangeable_normals_is_at_most_the_rate(n, rate):
    """Monte Carlo over calibration sets: P(new normal > threshold) = (n + 1 - k) / (n + 1) <= rate."""
    rng = np.random.default_rng(n)
    trials = 20000
    draws = rng.gamma(2.0, size=(trials, n + 1))
    thr = np.array([conformal_threshold(d[:n], rate).threshold for d in draws])
    observed = float(np.mean(draws[:, n] > thr))
    k = math.ceil((n + 1) * (1 - rate) - 1e-12)
    exact = (n + 1 - k) / (n + 1)
    assert exact <= rate + 1e-12
    sigma = math.sqrt(exact * (1 - exact) / trials)
    assert abs(observed - exact) < 5 * sigma


def test_p_values_count_the_scores_at_least_as_high():
    cal = [1.0, 2.0, 2.0, 5.0]
    np.testing.assert_allclose(p_values([0.5, 2.0, 3.0, 9.0], cal), [5 / 5, 4 / 5, 2 / 5, 1 / 5])
    assert np.isnan(p_values([np.nan], cal)[0])


def test_p_value_at_most_rate_is_the_threshold_decision():
    rng = np.random.default_rng(3)
    for n in (7, 19, 50, 99):
        cal = rng.standard_normal(n)
        new = rng.standard_normal(500)
        for rate in (0.01, 0.05, 0.1, 0.25):
            fit = conformal_threshold(cal, rate)
            if fit.short:
                continue
            np.testing.assert_array_equal(p_values(new, cal) <= rate, new > fit.threshold)


def test_valid_p_values_are_roughly_uniform_under_exchangeability():
    rng = np.random.default_rng(11)
    draws = rng.standard_normal((20000, 20))
    p = np.array([p_values([d[-1]], d[:-1])[0] for d in draws])
    for a in (0.05, 0.1, 0.5):
        assert np.mean(p <= a) <= a + 5 * math.sqrt(a * (1 - a) / len(p))


def test_pack_and_unpack_keep_each_sections_scores():
    packed = pack_calibration([np.array([3.0, 1.0]), np.array([]), np.array([2.0, 5.0, 4.0])])
    assert packed.shape == (3, 3)
    got = unpack_calibration(packed)
    assert [g.tolist() for g in got] == [[1.0, 3.0], [], [2.0, 4.0, 5.0]]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 2.0, float("nan")])
def test_bad_rates_and_scores_are_refused(bad):
    with pytest.raises(ValueError, match="false-alarm rate"):
        check_rate(bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        conformal_threshold([1.0, np.inf], 0.1)
    with pytest.raises(ValueError, match="no calibration"):
        conformal_threshold([], 0.1)


# -- in the detector and the verbs -------------------------------------------------------------


def test_detector_keeps_the_out_of_fold_training_scores(tiny_detectors, tiny_synth):
    det = Detector.load(tiny_detectors / "logmel" / "fan" / "detector.pt")
    cal = det.calibration_scores()
    n_train = {s: len(list((tiny_synth / "fan" / "train").glob(f"section_{s}_*.wav"))) for s in det.section_names}
    assert [len(c) for c in cal] == [n_train[s] for s in det.section_names]
    assert all(np.all(np.isfinite(c)) and np.all(c > 0) for c in cal)  # left out: no clip is at distance 0
    # the gamma threshold was fitted to these very scores (in another order: the fit is a numerical
    # optimisation whose rounding depends on the order, ~1e-5 relative here)
    from dgmix.scoring import fit_gamma_threshold

    for s, c in enumerate(cal):
        assert float(det.thresholds[s]) == pytest.approx(fit_gamma_threshold(c, 0.9), rel=1e-3)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_run_with_a_false_alarm_rate_sets_conformal_thresholds_and_p_value_files(tiny_synth, feature_cache, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--data", str(tiny_synth), "--methods", "logmel", "--preset", "tiny",
                                   "--out", str(out), "--cache", str(feature_cache), "--no-progress",
                                   "--false-alarm-rate", "0.2"])
    assert res.exit_code == 0, res.output
    det = Detector.load(out / "logmel" / "fan" / "detector.pt")
    assert det.info.false_alarm_rate == 0.2
    for s, cal in enumerate(det.calibration_scores()):
        assert float(det.thresholds[s]) == conformal_threshold(cal, 0.2).threshold
        sec = det.section_names[s]
        scores = dict(_rows(out / "logmel" / "scores" / f"anomaly_score_fan_section_{sec}_test.csv"))
        decisions = dict(_rows(out / "logmel" / "scores" / f"decision_result_fan_section_{sec}_test.csv"))
        pv = dict(_rows(out / "logmel" / "scores" / f"p_value_fan_section_{sec}_test.csv"))
        assert pv.keys() == scores.keys()
        for name, p in pv.items():
            assert float(p) == p_values([float(scores[name])], cal)[0]
            assert decisions[name] == str(int(float(scores[name]) > float(det.thresholds[s])))
    # dgmix score prints and writes the same p-values
    res = CliRunner().invoke(app, ["score", str(out / "logmel" / "fan" / "detector.pt"),
                                   str(tiny_synth / "fan" / "test"), "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    for row in _rows(tmp_path / "s.csv"):
        sec = row[0].rsplit("/", 1)[-1][8:10]
        cal = det.calibration_scores()[det.section_names.index(sec)]
        assert len(row) == 4 and float(row[3]) == pytest.approx(p_values([float(row[1])], cal)[0], rel=1e-3)


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "-0.01"])
def test_run_refuses_a_rate_outside_0_1_with_a_usage_error(bad, tmp_path):
    res = CliRunner().invoke(app, ["run", "--false-alarm-rate", bad, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--false-alarm-rate must be between 0 and 1" in res.output
    assert not (tmp_path / "r").exists()


def test_config_rate_is_validated():
    from dgmix.config import load_config
    from dgmix.errors import InputError

    assert load_config("tiny").scoring.false_alarm_rate is None
    with pytest.raises(InputError, match="false_alarm_rate must be in"):
        load_config("tiny", overrides={"scoring": {"false_alarm_rate": 1.0}})


def test_onnx_detector_gives_the_same_p_values(tiny_detectors, tmp_path):
    pytest.importorskip("onnxruntime")
    from dgmix.export.runtime import OnnxDetector
    from dgmix.export.writer import export_onnx

    det = Detector.load(tiny_detectors / "logmel" / "fan" / "detector.pt")
    path = tmp_path / "d.onnx"
    export_onnx(det, path)
    onnx = OnnxDetector.load(path)
    for a, b in zip(onnx.calibration_scores(), det.calibration_scores()):
        np.testing.assert_array_equal(a, b)
    scores = [0.0, float(np.median(det.calibration_scores()[0])), 1e9]
    np.testing.assert_array_equal(onnx.p_values(scores, ["00"] * 3), det.p_values(scores, ["00"] * 3))
