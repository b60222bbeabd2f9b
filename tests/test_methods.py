"""The method interface (issue 9): registry, a sixth method added without touching the pipeline,
the embedding cache key, and the one rule for clips without a domain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dgmix.config import RunConfig, load_config
from dgmix.data import ClipRecord, scan
from dgmix.errors import InputError
from dgmix.methods import Method, TrainJob, get_method, knn_detector, load_machine, method_names, register
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
    from dgmix.scoring.bundle import DetectorBundle

    assert DetectorBundle.load(tmp_path / "untrained" / "fan" / "detector.pt").scorer.pooling == "max"
    # the random control differs from the untrained encoder only by its re-estimated BN statistics
    a = DetectorBundle.load(tmp_path / "untrained" / "fan" / "detector.pt").encoder.state_dict()
    b = DetectorBundle.load(tmp_path / "random" / "fan" / "detector.pt").encoder.state_dict()
    stats = [k for k in a if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(a[k], b[k]) for k in a if k not in stats)
    assert not torch.equal(a["stages.conv3x3.1.running_var"], b["stages.conv3x3.1.running_var"])
    assert dataclasses.asdict(cfg) == before  # the pipeline does not modify the config


def test_per_method_names_must_be_registered(tiny_synth, feature_cache, tmp_path):
    cfg = load_config("tiny")
    cfg.scoring.per_method = {"dgmx": {"pooling": "max"}}
    with pytest.raises(InputError, match=r"per_method names unknown method\(s\) \['dgmx'\]"):
        run_pipeline(tiny_synth, tmp_path, cfg, methods=["logmel"], cache_dir=feature_cache, progress=False)


def test_embedding_cache_is_keyed_by_the_model(tiny_synth, feature_cache):
    """A cache dict reused across models must not serve one encoder's embeddings for another."""
    cfg = load_config("tiny")
    md = load_machine(scan(tiny_synth), "fan", cfg.features, feature_cache, progress=False)
    torch.manual_seed(1)
    enc_a = build_encoder(cfg.model, cfg.features).eval()
    torch.manual_seed(2)
    enc_b = build_encoder(cfg.model, cfg.features).eval()
    shared: dict = {}
    _, a = knn_detector("x", enc_a, md, cfg, cfg.scoring, cache=shared)
    _, b = knn_detector("x", enc_b, md, cfg, cfg.scoring, cache=shared)
    _, b_fresh = knn_detector("x", enc_b, md, cfg, cfg.scoring, cache={})
    _, logmel = knn_detector("x", None, md, cfg, cfg.scoring, cache=shared)
    np.testing.assert_array_equal(b, b_fresh)
    assert not np.allclose(a, b) and len(shared) == 3 and not np.allclose(logmel, b)


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
