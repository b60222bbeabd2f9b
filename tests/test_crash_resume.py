"""SIGKILL `dgmix run` in the middle of training or of scoring, rerun with --resume, and get the
outputs of an uninterrupted run; two processes filling one feature cache at once leave it correct.

The kill points are two of the run's phases (a pre-training checkpoint just written, the next
method's scoring), each recognised by a file the run writes. Wherever in the phase the kill lands,
the resumed outputs must equal the uninterrupted ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dgmix.cli import app

CONFIG = """\
pretrain: {epochs: 2, warmup_epochs: 1, batch_size: 16, windows_per_epoch: 32}
finetune: {epochs: 2, batch_size: 16, windows_per_epoch: 32}
"""
METHODS = "dgmix,logmel"
#: Phases of the run and the file whose appearance shows the run is in (or past) them.
PHASES = {
    "pre-training": "dgmix/fan/pretrain/log.jsonl",
    "pre-training checkpoint": "dgmix/fan/pretrain/last.pt",
    "fine-tuning": "dgmix/fan/finetune/log.jsonl",
    "fine-tuning checkpoint": "dgmix/fan/finetune/last.pt",
    "scoring": "dgmix/fan/done.json",
}


def _run_args(data: Path, out: Path, cfg: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(data), "--methods", METHODS, "--preset", "tiny", "--config", str(cfg),
            "--out", str(out), "--no-progress", *extra]


def _outputs(out: Path) -> dict[str, bytes]:
    files = sorted(out.glob("*/scores/*.csv")) + [out / "results.csv", out / "results.json"]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def _steps(log: Path) -> list[int]:
    from dgmix.training.log import read_log

    return [r["step"] for r in read_log(log)]


@pytest.mark.parametrize("phase", ["pre-training checkpoint", "scoring"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_synth, tmp_path, phase):
    delay = 0.05
    why = f"killed in {phase} + {delay:.2f} s"
    cfg = tmp_path / "small.yaml"
    cfg.write_text(CONFIG)
    cache = tmp_path / "cache"

    ref = tmp_path / "ref"
    res = CliRunner().invoke(app, _run_args(tiny_synth, ref, cfg, "--cache", str(cache)))
    assert res.exit_code == 0, res.output

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "dgmix", *_run_args(tiny_synth, out, cfg, "--cache", str(cache))],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        marker = out / PHASES[phase]
        while not marker.exists() and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = proc.returncode == -signal.SIGKILL

    res = CliRunner().invoke(app, _run_args(tiny_synth, out, cfg, "--cache", str(cache), "--resume"))
    assert res.exit_code == 0, f"{why}\n{res.output}"
    if killed and phase == "scoring":  # dgmix had written its done.json: it is read back, not retrained
        assert any(" dgmix " in ln and "finished in the earlier run, kept" in ln for ln in res.output.splitlines()), why
    assert _outputs(out) == _outputs(ref), why
    for stage in ("pretrain", "finetune"):
        log = f"dgmix/fan/{stage}/log.jsonl"
        assert _steps(out / log) == _steps(ref / log), why
    assert not list(out.rglob("*.tmp")), why


def test_two_processes_fill_one_cache(tiny_synth, tmp_path):
    """Two `dgmix features` processes filling the same empty cache at once: every entry equals
    the features computed in this process, and a third fill computes nothing."""
    from dgmix.data import scan
    from dgmix.features import FeatureCache, FeatureParams
    from dgmix.features.extract import clip_logmel

    cache = tmp_path / "cache"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "dgmix", "features", str(tiny_synth), "--cache", str(cache), "--no-progress",
           "--workers", "1"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    fc = FeatureCache(cache, FeatureParams())
    paths = [r.path for r in scan(tiny_synth).records]
    for p in paths:
        stored = np.load(fc.entry_path(p), allow_pickle=False)
        np.testing.assert_array_equal(stored, clip_logmel(p, FeatureParams()))
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    report = fc.fill(paths, workers=1, progress=False)
    assert report.computed == 0 and report.cached == len(paths)


@pytest.mark.parametrize("stage", ["pretrain"])
def test_pretrain_resume_after_stop_keeps_one_log(stage, tiny_synth, tmp_path):
    """A stopped `dgmix pretrain` resumed with --resume: one log row per step, none repeated."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "pre"
    args = [stage, "--data", str(tiny_synth), "--machine", "fan", "--preset", "tiny", "--config", str(cfg),
            "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert CliRunner().invoke(app, [*args, "--stop-after-epoch", "1"]).exit_code == 0
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert _steps(out / "log.jsonl") == [1, 2, 3, 4]
