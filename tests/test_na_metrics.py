"""n/a metrics (a section without anomalies, a machine type without any computable value) never
crash a verb: the run's summary, its report and ``dgmix report`` print n/a."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.methods import method_names
from dgmix.metrics import section_metrics
from dgmix.metrics.tables import ResultsTable
from dgmix.report.console import summary_markdown, where_lines


@pytest.fixture(scope="module")
def gappy_set(tmp_path_factory):
    """valve's test set without anomalous clips (every valve metric is n/a); fan section 01 with
    source-domain normals only (n/a too), fan section 00 complete."""
    from dgmix.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("gappy")
    generate(out, SynthConfig(machines=("fan", "valve"), sections=("00", "01"), train_source=4, train_target=2,
                              test_per_group=2, duration=3.0, seed=5), workers=1, progress=False)
    root = out / "dev_data"
    for p in (root / "valve" / "test").glob("*_anomaly_*.wav"):
        p.unlink()
    # fan section 01: only source-domain normals (its target-domain ROC panel has no clip at all)
    for p in {*(root / "fan" / "test").glob("section_01_*_anomaly_*.wav"),
              *(root / "fan" / "test").glob("section_01_target_*.wav")}:
        p.unlink()
    for gt in [*(root / "ground_truth_data").iterdir(), *(root / "ground_truth_domain").iterdir()]:
        gt.unlink()  # labels come from the names
    return root


def test_every_method_with_the_report_on_prints_na(gappy_set, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--data", str(gappy_set), "--preset", "tiny", "--out", str(out),
                                   "--no-progress", "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    table = res.output.split("official score (%)")[1].split("\n\n")[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| method")]
    assert {ln.split(" | ")[0][2:] for ln in rows} == set(method_names())
    for ln in rows:  # valve is the second column: n/a, fan and the official score are numbers
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[2] == "n/a" and cells[1] != "n/a" and cells[3] != "n/a", ln
    assert "best method:" in res.output and "/valve/detector.pt" not in res.output.split("best method:")[1]
    html = (out / "report.html").read_text()
    assert "n/a" in html
    (out / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert "n/a" in (out / "report.html").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["dgmix"]["official_score"] is not None


def test_summary_with_no_score_at_all():
    """Every official score n/a: the table says n/a and no best detector is named."""
    table = ResultsTable()
    only_normals = section_metrics(np.zeros(4, int), np.arange(4.0), np.array([0, 0, 1, 1]))
    table.add_machine("logmel", "valve", {"00": only_normals})
    assert table.official_score("logmel") is None
    md = summary_markdown(table)
    assert md.splitlines()[-1] == "| logmel | n/a | n/a |"
    lines = where_lines(__import__("pathlib").Path("RUN"), table, None, None)
    assert not any(ln.startswith("best method") for ln in lines)
