"""``dgmix run``'s printout and report, and ``dgmix report``, on the tiny synthetic set: one progress
line per machine x method, one summary table, where things are, and a self-contained HTML file whose
images are embedded PNGs (results tables, ROC, histograms, t-SNE, training curves)."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.report.collect import collect
from dgmix.report.inputs import read_train_embeddings

METHODS = ["baseline", "logmel", "random"]
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')


@pytest.fixture(scope="module")
def cli_run(tiny_synth, feature_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("reportrun") / "run"
    res = CliRunner().invoke(app, ["run", "--data", str(tiny_synth), "--preset", "tiny", "--methods",
                                   ",".join(METHODS), "--out", str(out), "--cache", str(feature_cache),
                                   "--no-paper-reference"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_run_prints_one_line_per_machine_and_method(cli_run):
    out, text = cli_run
    progress = [m for ln in text.splitlines() if (m := re.match(r"^\[\s*\d+s\] fan \(1/1\) (\w+) ", ln))]
    assert [m[1] for m in progress] == METHODS
    assert all("hmean" in m.string for m in progress)
    assert "\r" not in text and "it/s" not in text  # no progress-bar debris when stderr is not a terminal
    results = json.loads((out / "results.json").read_text())
    table = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert table[0] == "| method | fan | official score |"
    for m in METHODS:
        row = next(ln for ln in table if ln.startswith(f"| {m} |"))
        assert row.endswith(f"| {100 * results[m]['official_score']:.2f} |")
    assert "Per section" not in text  # per-section tables go to results.md and the report
    assert "Per section" in (out / "results.md").read_text()
    assert f"report:     {out / 'report.html'}" in text
    best = max(METHODS, key=lambda m: results[m]["official_score"])
    det = out / best / "fan" / "detector.pt"
    assert f"dgmix score {det} " in text and f"dgmix serve {det}" in text and det.is_file()


def test_report_is_self_contained_with_every_figure(cli_run):
    out, _ = cli_run
    html = (out / "report.html").read_text()
    imgs = IMG.findall(html)
    alts = [a for _, a in imgs]
    assert "ROC fan" in alts and "histograms fan" in alts and "t-SNE fan" in alts and "baseline: baseline" in alts
    for data, _ in imgs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(re.findall(r"<img ", html)) == len(imgs)  # every image is embedded
    assert not re.search(r'(src|href)="(https?:|file:|//)', html)
    assert "<link" not in html and "<script" not in html
    results = json.loads((out / "results.json").read_text())
    for m in METHODS:
        assert f"{100 * results[m]['official_score']:.2f}" in html
    assert "paper Harmonic Mean" not in html  # the run said --no-paper-reference


def test_report_inputs_match_the_run(cli_run, tiny_synth):
    out, _ = cli_run
    rc = collect(out)
    assert rc.methods == METHODS and rc.machines == ["fan"]
    for m in METHODS:
        secs = rc.scores[m]["fan"]
        assert sorted(secs) == ["00", "01"]
        for s in secs.values():
            assert s.threshold is not None and np.isfinite(s.threshold)
            assert s.is_anomaly.any() and (~s.is_anomaly).any()
    n_train = len(list((tiny_synth / "fan" / "train").glob("*.wav")))
    for m in METHODS:
        e = read_train_embeddings(out / "report_inputs" / "fan" / f"{m}_train.npz")
        assert e.embeddings.shape[0] == n_train and np.isfinite(e.embeddings).all()
        assert set(e.section) == {"00", "01"} and set(e.domain) == {"source", "target"}
    assert rc.embeddings["fan"]["logmel"].embeddings.shape[1] == 128  # log-mel frames, max over time
    assert ("baseline", "baseline") in rc.logs


def test_report_verb_with_paper_numbers(cli_run, tmp_path):
    out, _ = cli_run
    dest = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(out), "--out", str(dest), "--paper-reference", "--no-tsne"])
    assert res.exit_code == 0, res.output
    html = dest.read_text()
    assert "paper Harmonic Mean" in html and "57.54" in html  # paper Table 2: baseline, fan
    assert 't-SNE fan' not in html


def test_report_on_a_folder_that_is_not_a_run(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 1 and "not a dgmix run directory" in res.output and "Traceback" not in res.output


def test_report_explains_each_sections_three_highest_scoring_clips(cli_run):
    from dgmix.report.maps import read_explanations
    from dgmix.scoring.csvio import read_scores

    out, _ = cli_run
    html = (out / "report.html").read_text()
    assert "id='explain'" in html
    alts = {a for _, a in IMG.findall(html)}
    for m in METHODS:
        entries = read_explanations(out / m / "fan")
        for sec in ("00", "01"):
            names, scores = read_scores(out / m / "scores" / f"anomaly_score_fan_section_{sec}_test.csv")
            top = [n for _, n in sorted(zip(-scores, names))[:3]]
            mine = sorted((e for e in entries if e["section"] == sec), key=lambda e: e["rank"])
            assert [e["clip"] for e in mine] == top
            for e in mine:
                assert (out / m / "fan" / "explain" / e["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                assert e["clip"] in alts
                assert len(e["times_s"]) >= 1
                # pooled log-mel detectors name bands; learned ones and the baseline are time-resolved only
                assert (len(e["bands_hz"]) > 0) == (m == "logmel") and e["resolved"] == (
                    "time-mel" if m == "logmel" else "time")
