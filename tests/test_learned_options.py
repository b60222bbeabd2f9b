"""The learned path's settings, each against a reference: AdamW pre-training and the lr rule of
each optimizer, joined views through a detector bundle, the fine-tuning pair shares drawn as
configured, the training summary, the scoring device and the benchmark data set."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dgmix.augment.pairs import SOURCE, TARGET
from dgmix.cli import app
from dgmix.config import load_config
from dgmix.errors import InputError
from dgmix.optim import LARS
from dgmix.pipeline import run_pipeline
from dgmix.scoring.detector import Detector
from dgmix.synth.generate import SYNTH_SETS
from dgmix.training.common import snapshot, training_clips, weight_change
from dgmix.training.distributed import DistContext, resolve_device
from dgmix.training.pretrain import build_optimizer, pair_sampler


@pytest.fixture(scope="module")
def options_run(tiny_synth, tmp_path_factory):
    """A tiny dgmix run with AdamW pre-training and joined views (the ``cpu`` preset's choices)."""
    out = tmp_path_factory.mktemp("options_run")
    cfg = load_config("tiny", overrides={
        "pretrain": {"optimizer": "adamw", "joined_views": True, "epochs": 1, "warmup_epochs": 0},
        "finetune": {"epochs": 1, "joined_views": True},
    })
    run_pipeline(tiny_synth, out, cfg, methods=["dgmix"], cache_dir=out / "cache", progress=False,
                 echo=lambda s: None)
    return out, cfg


def _rows(path):
    with open(path, newline="") as fh:
        return {r[0]: float(r[1]) for r in csv.reader(fh)}


def test_the_detector_round_trips_through_dgmix_score(options_run, tiny_synth, tmp_path):
    out, cfg = options_run
    method = "dgmix"
    detector = Detector.load(out / method / "fan" / "detector.pt")
    assert detector.info.model == cfg.model
    # dgmix score on the WAVs gives the run's scores back
    expected = {}
    for sec in ("00", "01"):
        expected |= _rows(out / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv")
    out_csv = tmp_path / "s.csv"
    res = CliRunner().invoke(app, ["score", str(out / method / "fan" / "detector.pt"), str(tiny_synth / "fan" / "test"),
                                   "--csv", str(out_csv)])
    assert res.exit_code == 0, res.output
    with open(out_csv, newline="") as fh:
        got = {r[0].rsplit("/", 1)[-1]: float(r[1]) for r in csv.reader(fh)}
    assert [got[k] for k in expected] == list(expected.values())  # the same module: the same numbers


def test_stage_summaries_hold_the_training_signals(options_run):
    out, _ = options_run
    for stage in ("pretrain", "finetune"):
        data = json.loads((out / "dgmix" / "fan" / stage / "summary.json").read_text())
        assert data["steps"] >= 1 and data["encoder_weight_change"] > 0
        assert {"loss", "embedding_std"} <= set(data["last_terms"])
        assert data["encoder_weight_change_weights"] > 0 and data["encoder_weight_change_norm_bias"] > 0


def test_weight_change_reference():
    lin = nn.Linear(3, 2)
    start = snapshot(lin)
    with torch.no_grad():
        lin.weight.add_(1.0)
    w0, b0 = start["weight"], start["bias"]
    expected = float(torch.sqrt(torch.tensor(6.0) / (w0.pow(2).sum() + b0.pow(2).sum())))
    assert weight_change(start, lin) == pytest.approx(expected, rel=1e-6)
    assert weight_change(start, lin, "norm_bias") == 0.0
    assert weight_change(start, lin, "weights") == pytest.approx(float(torch.sqrt(6.0 / w0.pow(2).sum())), rel=1e-6)


# --------------------------------------------------------------------------- pre-training optimiser


def test_pretrain_optimizer_choice():
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    cfg = load_config("paper")
    opt, sched = build_optimizer(module, cfg, steps_per_epoch=10)
    assert isinstance(opt, LARS) and sched.base_lr == pytest.approx(0.8)  # 0.2 x 1024 / 256
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["eta"] == 0.001
    cfg = load_config("paper", overrides={"pretrain": {"optimizer": "adamw"}})
    opt, sched = build_optimizer(module, cfg, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.AdamW)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-4]  # BN parameters and biases undecayed
    assert len(opt.param_groups[[g["weight_decay"] for g in opt.param_groups].index(1e-4)]["params"]) == 1
    # lr null: AdamW's 1e-3; same schedule shape, ending at the LARS schedule's end/peak ratio (0.002 / 0.8)
    assert max(sched.lr_at(s) for s in range(1000)) == pytest.approx(1e-3)
    assert sched.lr_at(10_000) == pytest.approx(1e-3 * 0.002 / 0.8)
    # an explicit lr is the peak of either optimizer; final_lr is then where it ends
    for name in ("lars", "adamw"):
        cfg = load_config("paper", overrides={"pretrain": {"optimizer": name, "lr": 2e-3, "final_lr": 1e-4}})
        _, sched = build_optimizer(module, cfg, steps_per_epoch=10)
        assert max(sched.lr_at(s) for s in range(1000)) == pytest.approx(2e-3)
        assert sched.lr_at(10_000) == pytest.approx(1e-4)


def test_cpu_preset_schedule_is_unchanged_by_the_lr_merge():
    """The ``cpu`` preset (AdamW, lr null) keeps the schedule it had when AdamW's lr was a setting of
    its own (``adamw_lr`` 1e-3, end at ``final_lr`` over the LARS rule's lr), to the last bit."""
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    cfg = load_config("cpu")
    _, sched = build_optimizer(module, cfg, steps_per_epoch=8)
    p = cfg.pretrain
    assert (p.lr, p.optimizer, p.final_lr) == (None, "adamw", 0.002 * 32 / 1024)
    assert sched.base_lr == 1e-3 and sched.relative_final
    assert sched.final_lr == (0.002 * 32 / 1024) / (0.2 * 32 / 256)
    assert sched.lr_at(16) == 1e-3 * ((0.002 * 32 / 1024) / (0.2 * 32 / 256))


# --------------------------------------------------------------------------- fine-tuning pairs


def test_default_finetune_pairs_are_within_section_and_in_equal_shares(tiny_synth, feature_cache):
    cfg = load_config("tiny")
    f = cfg.finetune
    assert f.pair_shares == [1.0, 1.0, 1.0]
    clips = training_clips(tiny_synth, "fan", cfg, feature_cache, DistContext(), progress=False)
    sampler = pair_sampler(clips, by_section=True, shares=f.pair_shares)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, clips.n_windows, (30_000,), generator=g)
    a, b = sampler(idx, g)
    clip_a, clip_b = clips.windows.clip_of(a.numpy()), clips.windows.clip_of(b.numpy())
    assert (clips.clip_section[clip_a] == clips.clip_section[clip_b]).all()
    da, db = clips.clip_domain[clip_a], clips.clip_domain[clip_b]
    shares = [np.mean((da == SOURCE) & (db == SOURCE)), np.mean(da != db), np.mean((da == TARGET) & (db == TARGET))]
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.015)
    # pre-training's partners are uniform over the machine type, so they cross sections
    pre = pair_sampler(clips)
    a, b = pre(idx, g)
    cross = clips.clip_section[clips.windows.clip_of(a.numpy())] != clips.clip_section[clips.windows.clip_of(b.numpy())]
    assert 0.3 < cross.mean() < 0.7


# --------------------------------------------------------------------------- device, data set


def test_scoring_device_is_validated():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(InputError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="device"):
        load_config("tiny", overrides={"scoring": {"device": "gpu"}})


def test_benchmark_set_has_the_dcase_shape(tmp_path):
    bench = SYNTH_SETS["bench"]
    assert len(bench.sections) == 3 and bench.test_per_group >= 25
    assert bench.train_source == 10 * bench.train_target
    # the main job's set: every official-score cell from at least 25 x 25 normal/anomaly pairs per domain
    default = SYNTH_SETS["default"]
    assert default.test_per_group >= 25 and len(default.sections) >= 2 and default.test_sections is None
    big = SYNTH_SETS["dcase2022"]  # one DCASE 2022 machine type: 6,000 training, 600 test clips
    assert sum(big.count(d, "train", "normal", s) for d in ("source", "target") for s in big.sections) == 6000
    assert sum(big.count(d, "test", lab, s) for d in ("source", "target") for lab in ("normal", "anomaly")
               for s in big.sections) == 600
    res = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--set", "nope", "--no-progress"])
    assert res.exit_code == 2 and "--set" in res.output
    # the set's sizes apply unless an option overrides them
    res = CliRunner().invoke(app, ["synth", str(tmp_path / "b"), "--set", "bench", "--machines", "fan",
                                   "--sections", "00", "--train-source", "2", "--test-per-group", "1",
                                   "--duration", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    train = list((tmp_path / "b" / "dev_data" / "fan" / "train").glob("*.wav"))
    assert sum("_source_" in p.name for p in train) == 2
    assert sum("_target_" in p.name for p in train) == bench.train_target


def test_readme_names_every_difference_between_the_paper_and_cpu_presets():
    """Every field where ``cpu`` differs from ``paper`` is in the README's table."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Presets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    paper, cpu = load_config("paper").to_dict(), load_config("cpu").to_dict()
    missing = []
    for sec, fields in paper.items():
        if not isinstance(fields, dict):
            continue
        for name, value in fields.items():
            if cpu[sec][name] == value:
                continue
            first_cells = [row.split("|")[1] for row in rows]
            named = any(f"`{sec}." in cell and name in cell for cell in first_cells)
            if not (named or any(f"`*.{name}`" in cell for cell in first_cells)):
                missing.append(f"{sec}.{name}")
    assert not missing, f"README 'Presets' table lacks {missing}"


def test_two_runs_with_one_seed_write_byte_identical_scores(tiny_synth, feature_cache, tmp_path):
    """The README's claim about the main job's table: deterministic on one machine."""
    cfg = load_config("tiny", overrides={"pretrain": {"epochs": 1, "warmup_epochs": 0}, "finetune": {"epochs": 1}})
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        run_pipeline(tiny_synth, out, cfg, methods=["dgmix"], cache_dir=feature_cache, progress=False,
                     echo=lambda s: None)
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in (outs[0] / "dgmix" / "scores").glob("*.csv"))
    assert len(files) == 6  # anomaly scores, decisions and p-values, two sections
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
