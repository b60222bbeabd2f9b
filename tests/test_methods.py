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
    assert method_names() == ["baseline", "scratch", "vicreg", "dgmix", "logmel"]
    assert method_names(paper_only=True) == ["baseline", "scratch", "vicreg", "dgmix"]
    with pytest.raises(InputError, match="unknown method 'dgmx'; choose from baseline"):
        get_method("dgmx")
    with pytest.raises(ValueError, match="already registered"):
        register(get_method("dgmix"))


class RandomEncoderMethod(Method):
    """A sixth method, as a user would add one: a randomly initialised encoder (no training)."""

    name = "random-encoder"
    summary = "randomly initialised Table 1 encoder + k-NN (a control)"
    paper = False

    def train(self, job: TrainJob) -> Path | None:
        return None

    def encoder(self, model_dir, cfg: RunConfig):
        torch.manual_seed(cfg.seed)
        return build_encoder(cfg.model, cfg.features).eval()


@pytest.fixture
def sixth_method():
    method = register(RandomEncoderMethod())
    yield method
    _REGISTRY.pop(method.name)


def test_a_sixth_method_runs_through_the_pipeline(sixth_method, tiny_synth, feature_cache, tmp_path):
    cfg = load_config("tiny")
    cfg.scoring.per_method = {"random-encoder": {"pooling": "max"}}
    before = dataclasses.asdict(cfg)
    summary = run_pipeline(tiny_synth, tmp_path, cfg, methods=["random-encoder"], cache_dir=feature_cache,
                           progress=False, echo=lambda s: None)
    assert summary.table.methods() == ["random-encoder"]
    assert (tmp_path / "random-encoder" / "fan" / "detector.pt").is_file()
    assert (tmp_path / "random-encoder" / "scores" / "anomaly_score_fan_section_00_test.csv").is_file()
    from dgmix.scoring.bundle import DetectorBundle

    assert DetectorBundle.load(tmp_path / "random-encoder" / "fan" / "detector.pt").scorer.pooling == "max"
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
