"""Issue 10's options for the learned path, each against a reference: per-mel-bin input
standardisation (and its round trip through the detector bundle), the encoder activation, the
scale-normalised fine-tuning consistency term, AdamW pre-training, the fine-tuning pair shares
drawn as configured, the training summary, the scoring device and the benchmark data set."""

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
from dgmix.config import ModelConfig, load_config
from dgmix.errors import InputError
from dgmix.features import FeatureParams
from dgmix.losses.finetune import mixup_kl_loss
from dgmix.losses.terms import consistency_term
from dgmix.models import Encoder, InputNorm, build_encoder
from dgmix.optim import LARS
from dgmix.pipeline import run_pipeline
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.embed import resolve_device
from dgmix.synth.generate import SYNTH_SETS
from dgmix.training.common import snapshot, training_clips, weight_change
from dgmix.training.distributed import DistContext
from dgmix.training.pretrain import build_optimizer, pair_sampler

# --------------------------------------------------------------------------- input standardisation


def test_input_norm_statistics_match_numpy():
    rng = np.random.default_rng(0)
    feats = [rng.normal(-40 + np.arange(8)[:, None], 1 + np.arange(8)[:, None], size=(8, n)).astype(np.float32)
             for n in (50, 70, 31)]
    norm = InputNorm(8)
    norm.fit(feats)
    allf = np.concatenate(feats, axis=1).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), allf.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(norm.std.numpy(), allf.std(axis=1), rtol=1e-5)
    x = torch.from_numpy(feats[0][None, None, :, :16].copy())
    ref = (x - torch.from_numpy(allf.mean(axis=1)).float().view(1, 1, 8, 1)) / torch.from_numpy(
        allf.std(axis=1)).float().view(1, 1, 8, 1)
    torch.testing.assert_close(norm(x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        norm.fit([np.zeros((7, 10))])


def test_encoder_with_input_norm_is_the_plain_encoder_on_standardised_input():
    torch.manual_seed(0)
    with_norm = Encoder(input_size=(128, 64), input_norm=True).eval()
    plain = Encoder(input_size=(128, 64)).eval()
    plain.load_state_dict({k: v for k, v in with_norm.state_dict().items() if not k.startswith("input_norm.")})
    with_norm.input_norm.mean.copy_(torch.linspace(-60, -20, 128))
    with_norm.input_norm.std.copy_(torch.linspace(2, 9, 128))
    x = torch.randn(3, 1, 128, 64) * 5 - 40
    z = (x - with_norm.input_norm.mean.view(1, 1, -1, 1)) / with_norm.input_norm.std.view(1, 1, -1, 1)
    with torch.no_grad():
        torch.testing.assert_close(with_norm(x), plain(z), rtol=1e-4, atol=1e-4)
    assert {"input_norm.mean", "input_norm.std"} <= set(with_norm.state_dict())
    assert not any(k.startswith("input_norm") for k in plain.state_dict())  # default: Table 1 as before


def test_build_encoder_reads_the_model_options():
    enc = build_encoder(ModelConfig(input_norm="per_bin", activation="relu"), FeatureParams(n_mels=64, frames=32))
    assert isinstance(enc.input_norm, InputNorm) and enc.input_norm.n_mels == 64
    acts = {type(m) for m in enc.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))}
    assert acts == {nn.ReLU}
    assert enc(torch.randn(2, 1, 64, 32)).shape == (2, 320)
    default = build_encoder(ModelConfig(), FeatureParams())
    assert default.input_norm is None
    assert {type(m) for m in default.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))} == {nn.ReLU6}


@pytest.fixture(scope="module")
def options_run(tiny_synth, tmp_path_factory):
    """A tiny run of a trained method and the control with input standardisation and ReLU."""
    out = tmp_path_factory.mktemp("options_run")
    cfg = load_config("tiny", overrides={
        "model": {"input_norm": "per_bin", "activation": "relu"},
        "pretrain": {"optimizer": "adamw", "joined_views": True, "epochs": 1, "warmup_epochs": 0},
        "finetune": {"epochs": 1, "consistency_scale": "batch_std", "joined_views": True},
    })
    run_pipeline(tiny_synth, out, cfg, methods=["dgmix", "random"], cache_dir=out / "cache", progress=False,
                 echo=lambda s: None)
    return out, cfg


def _rows(path):
    with open(path, newline="") as fh:
        return {r[0]: float(r[1]) for r in csv.reader(fh)}


@pytest.mark.parametrize("method", ["dgmix", "random"])
def test_input_statistics_travel_in_the_bundle(options_run, tiny_synth, feature_cache, tmp_path, method):
    out, cfg = options_run
    bundle = DetectorBundle.load(out / method / "fan" / "detector.pt")
    clips = training_clips(tiny_synth, "fan", cfg, out / "cache", DistContext(), progress=False)
    allf = np.concatenate(clips.features, axis=1).astype(np.float64)
    np.testing.assert_allclose(bundle.encoder.input_norm.mean.numpy(), allf.mean(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(bundle.encoder.input_norm.std.numpy(), allf.std(axis=1), rtol=1e-4)
    assert bundle.model_config.input_norm == "per_bin" and bundle.model_config.activation == "relu"
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
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-5, atol=1e-5)


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


# --------------------------------------------------------------------------- fine-tuning consistency


def test_scale_normalised_consistency_reference():
    torch.manual_seed(0)
    y, y2 = torch.randn(16, 8), torch.randn(16, 8)
    lam = torch.rand(16)
    ym = lam[:, None] * y + (1 - lam[:, None]) * y2 + 0.1 * torch.randn(16, 8)
    logits, target = torch.randn(16, 3), torch.softmax(torch.randn(16, 3), dim=1)
    scale = torch.cat([y, y2]).std(dim=0).mean()
    ref = consistency_term(y / scale, y2 / scale, ym / scale, lam)
    got = mixup_kl_loss(logits, target, y, y2, ym, lam, gamma=2.0, consistency_scale="batch_std")
    torch.testing.assert_close(got["consistency"], ref)
    torch.testing.assert_close(got["loss"], got["kl"] + 2.0 * ref)
    # shrinking Y no longer lowers the term; on raw Y it falls with the square of the scale
    small = mixup_kl_loss(logits, target, 0.1 * y, 0.1 * y2, 0.1 * ym, lam, consistency_scale="batch_std")
    torch.testing.assert_close(small["consistency"], ref, rtol=1e-4, atol=1e-6)
    raw = mixup_kl_loss(logits, target, y, y2, ym, lam)["consistency"]
    raw_small = mixup_kl_loss(logits, target, 0.1 * y, 0.1 * y2, 0.1 * ym, lam)["consistency"]
    torch.testing.assert_close(raw_small, 0.01 * raw, rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="consistency_scale"):
        mixup_kl_loss(logits, target, y, y2, ym, lam, consistency_scale="nope")


# --------------------------------------------------------------------------- pre-training optimiser


def test_pretrain_optimizer_choice():
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    cfg = load_config("paper")
    opt, sched = build_optimizer(module, cfg, steps_per_epoch=10)
    assert isinstance(opt, LARS) and sched.base_lr == pytest.approx(0.8)
    cfg = load_config("paper", overrides={"pretrain": {"optimizer": "adamw", "adamw_lr": 2e-3}})
    opt, sched = build_optimizer(module, cfg, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.AdamW)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-4]  # BN parameters and biases undecayed
    assert len(opt.param_groups[[g["weight_decay"] for g in opt.param_groups].index(1e-4)]["params"]) == 1
    # same schedule shape: warm-up to adamw_lr, end at the paper's end/peak ratio (0.002 / 0.8)
    assert max(sched.lr_at(s) for s in range(1000)) == pytest.approx(2e-3)
    assert sched.lr_at(10_000) == pytest.approx(2e-3 * 0.002 / 0.8)


# --------------------------------------------------------------------------- fine-tuning pairs


def test_default_finetune_pairs_are_within_section_and_in_equal_shares(tiny_synth, feature_cache):
    cfg = load_config("tiny")
    f = cfg.finetune
    assert f.pair_scope == "section" and f.pair_shares == [1.0, 1.0, 1.0] and not f.decay_norm_and_bias
    clips = training_clips(tiny_synth, "fan", cfg, feature_cache, DistContext(), progress=False)
    sampler = pair_sampler(clips, f.pair_scope, f.pair_shares)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, clips.n_windows, (30_000,), generator=g)
    a, b = sampler(idx, g)
    clip_a, clip_b = clips.windows.clip_of(a.numpy()), clips.windows.clip_of(b.numpy())
    assert (clips.clip_section[clip_a] == clips.clip_section[clip_b]).all()
    da, db = clips.clip_domain[clip_a], clips.clip_domain[clip_b]
    shares = [np.mean((da == SOURCE) & (db == SOURCE)), np.mean(da != db), np.mean((da == TARGET) & (db == TARGET))]
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.015)
    # the behaviour before issue 10 is one option away: uniform over the machine type
    old = pair_sampler(clips, "machine", None)
    a, b = old(idx, g)
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
    assert SYNTH_SETS["default"].test_per_group == 4
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
    """Issue 10 item 6: every field where ``cpu`` differs from ``paper`` is in the README's table."""
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
    assert len(files) == 4  # anomaly scores and decisions, two sections
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
