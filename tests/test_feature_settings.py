"""Non-default feature settings end to end.

One FeatureParams drives the feature cache, the encoder's input shape and the detector bundle's
front end, so a run with another ``n_mels``, ``hop_length``, ``frames`` and ``window_hop``
trains, writes bundles, and ``dgmix score`` reproduces the run's scores from the WAV files.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.config import ModelConfig, load_config
from dgmix.features import FeatureParams
from dgmix.models import build_encoder
from dgmix.pipeline import run_pipeline
from dgmix.scoring.detector import Detector

FEATURES = {"n_mels": 64, "hop_length": 256, "frames": 32, "window_hop": 4}
METHODS = ["scratch", "logmel"]  # a learned encoder and the log-mel front end alone


def test_encoder_input_follows_the_feature_settings():
    enc = build_encoder(ModelConfig(), FeatureParams(n_mels=64, frames=32))
    assert enc.input_size == (64, 32) and enc.final_map_size == (2, 1)
    # the Table 1 shape is the default
    assert build_encoder(ModelConfig(), FeatureParams()).final_map_size == (4, 2)


@pytest.fixture(scope="module")
def custom_run(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("custom_features")
    cfg = load_config("tiny", overrides={"features": FEATURES, "finetune": {"epochs": 1}})
    run_pipeline(tiny_synth, out, cfg, methods=METHODS, cache_dir=out / "cache", progress=False,
                 echo=lambda s: None)
    return out


def _rows(path):
    with open(path, newline="") as fh:
        return {r[0]: float(r[1]) for r in csv.reader(fh)}


@pytest.mark.parametrize("method", METHODS)
def test_score_cli_reproduces_the_run(custom_run, tiny_synth, tmp_path, method):
    path = custom_run / method / "fan" / "detector.pt"
    assert Detector.load(path).params == FeatureParams(**FEATURES)
    expected = {}
    for sec in ("00", "01"):
        expected |= _rows(custom_run / method / "scores" / f"anomaly_score_fan_section_{sec}_test.csv")
    out_csv = tmp_path / "scores.csv"
    # the section of each clip comes from its name
    res = CliRunner().invoke(app, ["score", str(path), str(tiny_synth / "fan" / "test"), "--csv", str(out_csv)])
    assert res.exit_code == 0, res.output
    with open(out_csv, newline="") as fh:
        got = {r[0].rsplit("/", 1)[-1]: float(r[1]) for r in csv.reader(fh)}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-5, atol=1e-5)
