"""The ``logmel`` method against an independent computation (librosa log-mel, max over time,
sklearn 1-NN per section)."""

from __future__ import annotations

import csv
import sys

import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.neighbors import NearestNeighbors

from dgmix.config import load_config
from dgmix.pipeline import run_pipeline


def _librosa_max(path):
    y, sr = sf.read(path, dtype="float32")
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
    return (10 * np.log10(mel + sys.float_info.epsilon)).max(axis=1)


@pytest.fixture(scope="module")
def logmel_run(tiny_synth, feature_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("logmel")
    # max pooling and 1-NN for logmel only (its recommendation without the label-free choice of
    # scoring.select, tested in test_selection.py); the other methods would keep "mean"
    cfg = load_config("tiny", overrides={"scoring": {"per_method": {"logmel": {"select": "none"}}}})
    assert cfg.scoring.pooling == "mean"
    run_pipeline(tiny_synth, out, cfg, methods=["logmel"], cache_dir=feature_cache, progress=False,
                 echo=lambda s: None)
    return out


def test_logmel_max_matches_librosa_sklearn(logmel_run, tiny_synth):
    train = sorted((tiny_synth / "fan" / "train").glob("*.wav"))
    for sec in ("00", "01"):
        bank_files = [p for p in train if p.name.startswith(f"section_{sec}_")]
        bank = np.stack([_librosa_max(p) for p in bank_files])
        nn = NearestNeighbors(n_neighbors=1).fit(bank)
        with open(logmel_run / "logmel" / "scores" / f"anomaly_score_fan_section_{sec}_test.csv") as fh:
            rows = list(csv.reader(fh))
        queries = np.stack([_librosa_max(tiny_synth / "fan" / "test" / r[0]) for r in rows])
        expected = nn.kneighbors(queries)[0][:, 0]
        np.testing.assert_allclose([float(r[1]) for r in rows], expected, rtol=1e-4, atol=1e-3)
