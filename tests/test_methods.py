"""The method interface: registry, a sixth method added without touching the pipeline, the health
check of a collapsed encoder, and the one rule for clips without a domain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dgmix.config import RunConfig, load_config
from dgmix.data import ClipRecord, scan
from dgmix.errors import InputError
from dgmix.methods import Method, TrainJob, fit_detector, get_method, load_machine, method_names, register
from dgmix.methods.registry import _REGISTRY
from dgmix.models import build_encoder
from dgmix.pipeline import run_pipeline
from dgmix.training.data import load_clipset, make_cache


def test_registry_order_and_errors():
    assert method_names() == ["baseline", "scratch", "vicreg", "dgmix", "logmel", "random"]
    assert method_names(paper_only=True) == ["baseline", "scratch", "vicreg", "dgmix"]
    with pytest.raises(InputError, match="unknown method 'dgmx'; choose from baseline"):
        get_method("dgmx")
    with pytest.raises(ValueError, match="already registered"):
        register(get_method("dgmix"))


class UntrainedMethod(Method):
    """A new method, as a user would add one: a randomly initialised encoder, BN untouched."""

    name = "untrained"
    summary = "randomly initialised Table 1 encoder, default BN statistics + k-NN"
    paper = False

    def train(self, job: TrainJob) -> Path | None:
        return None

    def encoder(self, model_dir, cfg: RunConfig):
        torch.manual_seed(cfg.seed)
        return build_encoder(cfg.model, cfg.features).eval()


@pytest.fixture
def sixth_method():
    method = register(UntrainedMethod())
    yield method
    _REGISTRY.pop(method.name)


def test_a_sixth_method_runs_through_the_pipeline(sixth_method, tiny_synth, feature_cache, tmp_path):
    cfg = load_config("tiny")
    cfg.scoring.per_method = {"untrained": {"pooling": "max"}}
    before = dataclasses.asdict(cfg)
    summary = run_pipeline(tiny_synth, tmp_path, cfg, methods=["untrained", "random"], cache_dir=feature_cache,
                           progress=False, echo=lambda s: None)
    assert summary.table.methods() == ["untrained", "random"]
    for name in ("untrained", "random"):
        assert (tmp_path / name / "fan" / "detector.pt").is_file()
        assert (tmp_path / name / "scores" / "anomaly_score_fan_section_00_test.csv").is_file()
    from dgmix.scoring.detector import Detector

    untrained = Detector.load(tmp_path / "untrained" / "fan" / "detector.pt")
    control = Detector.load(tmp_path / "random" / "fan" / "detector.pt")
    assert untrained.info.pooling == "max" and control.info.pooling == "mean"
    assert untrained.info.kind == control.info.kind == "encoder"
    # the random control re-estimates its BN statistics; the untrained encoder keeps the defaults
    clip = [np.random.default_rng(0).normal(-40, 10, (untrained.params.n_mels, 80)).astype(np.float32)]
    assert not torch.allclose(untrained.clip_vectors(clip), control.clip_vectors(clip))
    assert dataclasses.asdict(cfg) == before  # the pipeline does not modify the config


def test_per_method_names_must_be_registered(tiny_synth, feature_cache, tmp_path):
    cfg = load_config("tiny")
    cfg.scoring.per_method = {"dgmx": {"pooling": "max"}}
    with pytest.raises(InputError, match=r"per_method names unknown method\(s\) \['dgmx'\]"):
        run_pipeline(tiny_synth, tmp_path, cfg, methods=["logmel"], cache_dir=feature_cache, progress=False)


class Collapsed(torch.nn.Module):
    """An encoder that maps every window to the same point (up to 1e-7 of it)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + 1e-7 * self.inner(x)


def test_a_collapsed_encoder_is_named_degenerate(tiny_synth, feature_cache, tmp_path):
    cfg = load_config("tiny")
    md = load_machine(scan(tiny_synth), "fan", cfg.features, feature_cache, progress=False)
    torch.manual_seed(0)
    encoder = build_encoder(cfg.model, cfg.features).eval()
    healthy = fit_detector("x", md, cfg, cfg.scoring, encoder=encoder)
    collapsed = fit_detector("x", md, cfg, cfg.scoring, encoder=Collapsed(encoder))
    assert healthy.info.health["ok"] and healthy.info.health["embedding_spread"] > 1e-2
    assert not collapsed.info.health["ok"] and collapsed.info.health["embedding_spread"] < 1e-5
    assert "differ by" in collapsed.info.health["reason"]


def test_the_run_names_a_degenerate_detector(tiny_synth, feature_cache, tmp_path, monkeypatch):
    import json

    from dgmix.methods.random_encoder import RandomEncoderMethod

    plain = RandomEncoderMethod.encoder
    monkeypatch.setattr(RandomEncoderMethod, "encoder", lambda self, d, cfg: Collapsed(plain(self, d, cfg)))
    lines: list[str] = []
    run_pipeline(tiny_synth, tmp_path, load_config("tiny"), methods=["random"], cache_dir=feature_cache,
                 progress=False, echo=lines.append)
    assert any("warning: random/fan: degenerate detector" in line for line in lines)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "fan" in results["random"]["degenerate_detectors"]
    assert "Degenerate detector" in (tmp_path / "results.md").read_text()


def test_batchnorm_reestimation_matches_the_window_statistics():
    from dgmix.features import WindowDataset
    from dgmix.training.bn import reestimate_batchnorm

    rng = np.random.default_rng(0)
    feats = [rng.normal(-30, 8, size=(16, 40)).astype(np.float32) for _ in range(3)]
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    bn = torch.nn.BatchNorm2d(4)
    module = torch.nn.Sequential(conv, bn)
    used = reestimate_batchnorm(module, feats, frames=8, hop=4, batch_size=1000)
    windows = WindowDataset(feats, frames=8, hop=4)
    assert used == len(windows) and not module.training and bn.momentum == 0.1
    with torch.no_grad():
        y = conv(windows.batch(np.arange(len(windows))))
    torch.testing.assert_close(bn.running_mean, y.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(bn.running_var, y.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-4)


def test_unknown_domain_counts_as_source_everywhere(tiny_synth, feature_cache):
    rec = ClipRecord(path=Path("/x/a.wav"), machine="m", section="00", domain="unknown", split="train",
                     label="normal")
    assert rec.bank_domain == "source"
    assert ClipRecord(**{**dataclasses.asdict(rec), "domain": "target"}).bank_domain == "target"
    cfg = load_config("tiny")
    records = scan(tiny_synth).select(machine="fan", split="train")
    as_unknown = [dataclasses.replace(r, domain="unknown") for r in records]
    clips = load_clipset(as_unknown, make_cache(feature_cache, cfg.features), cfg.features)
    assert (clips.clip_domain == 0).all()  # training: source, as the k-NN banks use
