"""``dgmix evaluate`` on tiny generated score folders, with labels from names and from ground truth."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import typer
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import dgmix


def _load_register():
    """Load dgmix/cli/evaluate.py by path: the test does not depend on the other CLI verbs that
    ``dgmix.cli``'s package ``__init__`` imports."""
    path = Path(dgmix.__file__).parent / "cli" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("_dgmix_cli_evaluate_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.register


register = _load_register()

MACHINES = ("fan", "ToyCar")
SECTIONS = ("00", "01")


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _main() -> None:  # keeps "evaluate" as a sub-command
        pass

    return app


def pair_auc(neg, pos) -> float:
    neg, pos = np.asarray(neg), np.asarray(pos)
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
                 / (len(pos) * len(neg)))


def _section_data(seed: int):
    """4 clips per (domain, label) group: labels, domains, scores."""
    rng = np.random.default_rng(seed)
    dom = np.repeat([0, 0, 1, 1], 4)
    y = np.repeat([0, 1, 0, 1], 4)
    s = rng.normal(size=16) + 1.2 * y
    return y, dom, s


def _expected(y, dom, s):
    a_s = pair_auc(s[(y == 0) & (dom == 0)], s[y == 1])
    a_t = pair_auc(s[(y == 0) & (dom == 1)], s[y == 1])
    return a_s, a_t, roc_auc_score(y, s, max_fpr=0.1)


@pytest.fixture()
def dev_scores(tmp_path: Path):
    """Development-style names (labels in the names) + decision files for fan only."""
    d = tmp_path / "run1"
    d.mkdir()
    expected = {}
    for mi, m in enumerate(MACHINES):
        for si, sec in enumerate(SECTIONS):
            y, dom, s = _section_data(10 * mi + si)
            names = [
                f"section_{sec}_{'target' if t else 'source'}_test_"
                f"{'anomaly' if a else 'normal'}_{i:04d}_attr.wav"
                for i, (t, a) in enumerate(zip(dom, y, strict=True))
            ]
            order = np.random.default_rng(si).permutation(16)  # file order need not be sorted
            lines = "".join(f"{names[i]},{float(s[i])!r}\n" for i in order)
            (d / f"anomaly_score_{m}_section_{sec}_test.csv").write_text(lines)
            if m == "fan":
                dec = "".join(f"{names[i]},{int(s[i] > 0.6)}\n" for i in order)
                (d / f"decision_result_{m}_section_{sec}_test.csv").write_text(dec)
            expected[(m, sec)] = _expected(y, dom, s)
    return d, expected


def test_evaluate_dev_names_json(dev_scores, tmp_path):
    d, expected = dev_scores
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), ["evaluate", str(d), "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"run1"}
    assert set(data["run1"]) == {"fan", "ToyCar", "official_score", "official_score_ci95", "official_score_values"}
    for (m, sec), (a_s, a_t, p) in expected.items():
        got = data["run1"][m][sec]
        assert got["auc_source"] == pytest.approx(a_s)
        assert got["auc_target"] == pytest.approx(a_t)
        assert got["pauc"] == pytest.approx(p)
    allv = [v for e in expected.values() for v in e]
    assert data["run1"]["official_score"] == pytest.approx(scipy.stats.hmean(allv))
    ci = data["run1"]["official_score_ci95"]  # jackknife interval (tests/test_confidence.py)
    assert ci["low"] < data["run1"]["official_score"] < ci["high"] and ci["n"] == 16 * len(expected)
    assert "f1_source" in data["run1"]["fan"]["00"] and "f1_source" not in data["run1"]["ToyCar"]["00"]
    for f in ("results.md", "results.csv", "results.json"):
        assert (out / f).is_file()
    assert json.loads((out / "results.json").read_text()) == data


def test_evaluate_prints_table(dev_scores):
    d, expected = dev_scores
    res = CliRunner().invoke(_app(), ["evaluate", str(d), "--method", "mine", "--paper", "dgmix"])
    assert res.exit_code == 0, res.output
    fan_s = scipy.stats.hmean([expected[("fan", s)][0] for s in SECTIONS])
    assert "## mine" in res.stdout
    assert f"| fan | {100 * fan_s:.2f} |" in res.stdout
    assert "| fan | 83.37 | 76.73 | 70.74 | 76.60 |" in res.stdout  # the paper's row
    # paper order: ToyCar before fan
    assert res.stdout.index("| ToyCar |") < res.stdout.index("| fan |")


def _gt_layout(tmp_path: Path):
    """Evaluation-style names (no labels) + the evaluator's ground-truth folders."""
    scores, gt = tmp_path / "eval_run", tmp_path / "gt"
    scores.mkdir()
    (gt / "ground_truth_data").mkdir(parents=True)
    (gt / "ground_truth_domain").mkdir()
    expected = {}
    for si, sec in enumerate(("03", "04")):
        y, dom, s = _section_data(100 + si)
        names = [f"section_{sec}_{i:04d}.wav" for i in range(16)]
        (scores / f"anomaly_score_valve_section_{sec}_test.csv").write_text(
            "".join(f"{n},{float(v)!r}\n" for n, v in zip(names, s, strict=True)))
        base = f"ground_truth_valve_section_{sec}_test.csv"
        (gt / "ground_truth_data" / base).write_text(
            "".join(f"{n},{v}\n" for n, v in zip(names, y, strict=True)))
        (gt / "ground_truth_domain" / base).write_text(
            "".join(f"{n},{v}\n" for n, v in zip(names[::-1], dom[::-1], strict=True)))
        expected[sec] = _expected(y, dom, s)
    (gt / "ground_truth_data" / "ground_truth_valve_section_05_test.csv").write_text("x.wav,0\n")
    return scores, gt, expected


def test_evaluate_ground_truth_layout(tmp_path):
    scores, gt, expected = _gt_layout(tmp_path)
    # section 05 is in the ground truth but has no score file: refused, named
    res = CliRunner().invoke(_app(), ["evaluate", str(scores), "--ground-truth", str(gt), "--json"])
    assert res.exit_code == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "anomaly_score_valve_section_05_test.csv" in errors[0]
    assert "--allow-missing" in errors[0]
    res = CliRunner().invoke(_app(), ["evaluate", str(scores), "--ground-truth", str(gt), "--json", "--allow-missing"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["eval_run"]
    for sec, (a_s, a_t, p) in expected.items():
        assert data["valve"][sec]["auc_source"] == pytest.approx(a_s)
        assert data["valve"][sec]["auc_target"] == pytest.approx(a_t)
        assert data["valve"][sec]["pauc"] == pytest.approx(p)
    assert "1 ground-truth section(s) have no score file, counted as n/a: valve/05" in res.stderr
    counted = json.loads(res.stdout)["eval_run"]["official_score_values"]
    assert counted["n_expected"] == 3 * (len(expected) + 1) and counted["n_values"] == 3 * len(expected)
    table = CliRunner().invoke(_app(), ["evaluate", str(scores), "--ground-truth", str(gt), "--allow-missing"])
    assert f"over {3 * len(expected)} of {3 * (len(expected) + 1)} values" in table.stdout
    # without ground truth the evaluation names carry no labels
    res2 = CliRunner().invoke(_app(), ["evaluate", str(scores)])
    assert res2.exit_code == 1
    assert "carries no domain/label" in res2.stderr and "ground truth" in res2.stderr


def test_evaluate_errors(tmp_path):
    scores, gt, _ = _gt_layout(tmp_path)
    app = _app()
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "missing: folder not found" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(app, ["evaluate", str(empty)])
    assert r.exit_code == 1 and "no anomaly_score_" in r.stderr
    # names that do not match the ground truth: drop one row, add a stranger
    f = scores / "anomaly_score_valve_section_03_test.csv"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[1:]) + "other.wav,0.5\nother2.wav,0.1\n")
    r = CliRunner().invoke(app, ["evaluate", str(scores), "-g", str(gt), "--allow-missing"])
    assert r.exit_code == 1
    assert "anomaly_score_valve_section_03_test.csv: file names do not match the ground truth: " \
           "1 ground-truth clips missing, 2 names not in the ground truth" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # non-numeric score
    f.write_text("".join(lines[:3]) + "section_03_0003.wav,high\n" + "".join(lines[4:]))
    r = CliRunner().invoke(app, ["evaluate", str(scores), "-g", str(gt), "--allow-missing"])
    assert r.exit_code == 1 and "line 4: score 'high' is not a number" in r.stderr
    # missing ground-truth file for a scored section
    (scores / "anomaly_score_fan_section_00_test.csv").write_text("section_00_0000.wav,1.0\n")
    f.write_text("".join(lines))
    r = CliRunner().invoke(app, ["evaluate", str(scores), "-g", str(gt), "--allow-missing"])
    assert r.exit_code == 1 and "ground_truth_fan_section_00_test.csv: file not found" in r.stderr
    r = CliRunner().invoke(app, ["evaluate", str(scores), "--paper", "nope"])
    assert r.exit_code == 2


def test_evaluate_section_without_anomalies(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "anomaly_score_fan_section_00_test.csv").write_text(
        "section_00_source_test_normal_0000_a.wav,0.1\n"
        "section_00_target_test_normal_0001_a.wav,0.2\n")
    r = CliRunner().invoke(_app(), ["evaluate", str(d)])
    # issue 15: n/a values, one warning line, exit 0
    assert r.exit_code == 0, r.output
    assert "| fan | n/a | n/a | n/a | n/a |" in r.stdout
    assert r.stderr.strip() == ("warning: fan section 00: no anomalous test clips; AUC-S, AUC-T, pAUC n/a, "
                                "left out of the official score")
