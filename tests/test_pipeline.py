"""End to end on a tiny synthetic set: all six methods, official CSVs, metrics recomputed
independently with sklearn, ``dgmix score`` reproducing every run CSV exactly, and ``dgmix evaluate``."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from dgmix.config import load_config
from dgmix.pipeline import run_pipeline

METHODS = ["baseline", "scratch", "vicreg", "dgmix", "logmel", "random"]
NAME = re.compile(r"^section_(\d\d)_(source|target)_test_(normal|anomaly)_\d{4}_.*\.wav$")


@pytest.fixture(scope="module")
def tiny_run(tiny_synth, feature_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = load_config("tiny")
    lines: list[str] = []
    summary = run_pipeline(tiny_synth, out, cfg, methods=METHODS, cache_dir=feature_cache, progress=False,
                           echo=lines.append)
    return out, summary, lines


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_outputs_exist(tiny_run):
    out, summary, lines = tiny_run
    for f in ("results.md", "results.csv", "results.json", "config.yaml"):
        assert (out / f).is_file()
    for method in METHODS:
        assert (out / method / "fan" / "detector.pt").is_file()
        for sec in ("00", "01"):
            assert (out / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv").is_file()
            assert (out / method / "scores" / f"decision_result_fan_section_{sec}_test.csv").is_file()
    assert any("fan" in line and "dgmix" in line for line in lines)


def test_csv_official_format(tiny_run, tiny_synth):
    out, _, _ = tiny_run
    test_names = {p.name for p in (tiny_synth / "fan" / "test").glob("*.wav")}
    for method in METHODS:
        seen = set()
        for sec in ("00", "01"):
            scores = _read(out / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv")
            decisions = _read(out / method / "scores" / f"decision_result_fan_section_{sec}_test.csv")
            raw = (out / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv").read_text()
            assert not raw.startswith("filename") and raw.endswith("\n") and "\r" not in raw
            assert [r[0] for r in scores] == [r[0] for r in decisions]
            for row in scores:
                assert len(row) == 2 and NAME.match(row[0]) and row[0].startswith(f"section_{sec}_")
                assert np.isfinite(float(row[1]))
            assert {r[1] for r in decisions} <= {"0", "1"}
            seen |= {r[0] for r in scores}
        assert seen == test_names


def _independent_metrics(out, method):
    """AUC-S/AUC-T/pAUC per section straight from the CSVs, by the evaluator's rule."""
    res = {}
    for sec in ("00", "01"):
        rows = _read(out / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv")
        parsed = [NAME.match(r[0]).groups() for r in rows]
        y = np.array([p[2] == "anomaly" for p in parsed], dtype=int)
        dom = np.array([p[1] for p in parsed])
        s = np.array([float(r[1]) for r in rows])
        src = (dom == "source") | (y == 1)
        tgt = (dom == "target") | (y == 1)
        res[sec] = (roc_auc_score(y[src], s[src]), roc_auc_score(y[tgt], s[tgt]),
                    roc_auc_score(y, s, max_fpr=0.1))
    return res


@pytest.mark.parametrize("method", METHODS)
def test_metrics_recomputed_independently(tiny_run, method):
    out, _, _ = tiny_run
    data = json.loads((out / "results.json").read_text())
    ref = _independent_metrics(out, method)
    for sec, (aucs, auct, pauc) in ref.items():
        got = data[method]["fan"][sec]
        assert got["auc_source"] == pytest.approx(aucs, abs=1e-9)
        assert got["auc_target"] == pytest.approx(auct, abs=1e-9)
        assert got["pauc"] == pytest.approx(pauc, abs=1e-9)
    flat = [v for t in ref.values() for v in t]
    assert data[method]["official_score"] == pytest.approx(hmean(flat), abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_score_cli_reproduces_the_run_csv_exactly(tiny_run, tiny_synth, tmp_path, method):
    """``dgmix score`` loads the module the run scored with: every score and decision is equal."""
    from typer.testing import CliRunner

    from dgmix.cli import app

    out, _, _ = tiny_run
    res = CliRunner().invoke(app, ["score", str(out / method / "fan" / "detector.pt"), str(tiny_synth / "fan" / "test"),
                                   "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    got = {r[0].rsplit("/", 1)[-1]: (float(r[1]), int(r[2])) for r in _read(tmp_path / "s.csv")}
    run = {}
    for sec in ("00", "01"):
        dec = dict(_read(out / method / "scores" / f"decision_result_fan_section_{sec}_test.csv"))
        for name, score in _read(out / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv"):
            run[name] = (float(score), int(dec[name]))
    assert got == run


def test_score_cli(tiny_run, tiny_synth, tmp_path):
    from typer.testing import CliRunner

    from dgmix.cli import app

    out, _, _ = tiny_run
    clip = sorted((tiny_synth / "fan" / "test").glob("section_00_*.wav"))[0]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    res = CliRunner().invoke(app, ["score", str(out / "dgmix" / "fan" / "detector.pt"), str(clip), str(bad),
                                   "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    rows = _read(tmp_path / "s.csv")
    assert len(rows) == 1 and rows[0][0] == str(clip)
    expected = {r[0]: float(r[1]) for r in _read(out / "dgmix" / "scores" / "anomaly_score_fan_section_00_test.csv")}
    assert float(rows[0][1]) == pytest.approx(expected[clip.name], rel=1e-5)


def test_evaluate_cli_matches_run(tiny_run):
    from typer.testing import CliRunner

    from dgmix.cli import app

    out, _, _ = tiny_run
    res = CliRunner().invoke(app, ["evaluate", str(out / "dgmix" / "scores"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    ref = json.loads((out / "results.json").read_text())["dgmix"]
    method = next(iter(data))
    assert data[method]["official_score"] == pytest.approx(ref["official_score"], abs=1e-12)
