"""The CLI: every verb answers --help, python -m dgmix is the same app, config errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dgmix.cli import app

VERBS = ["synth", "data", "features", "pretrain", "finetune", "run", "evaluate", "score", "report", "download"]


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb):
    res = CliRunner().invoke(app, [verb, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_python_m_dgmix_is_the_same_cli():
    proc = subprocess.run([sys.executable, "-m", "dgmix", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for verb in VERBS:
        assert verb in proc.stdout


def test_bad_config_file_is_one_line_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("pretrain:\n  epochz: 3\n")
    res = CliRunner().invoke(app, ["pretrain", "--data", str(tmp_path), "--machine", "fan", "--preset", "tiny",
                                   "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 1
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "bad.yaml" in lines[0] and "epochz" in lines[0]


def test_unknown_preset(tmp_path):
    res = CliRunner().invoke(app, ["run", "--data", str(tmp_path), "--preset", "huge"])
    assert res.exit_code == 2 and "huge" in res.output
