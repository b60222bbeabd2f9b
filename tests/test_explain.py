"""Explanations (dgmix.scoring.explain): an injected event is found in its band and at its time;
the map adds up to the score; `dgmix score --explain` and `POST /score?explain=1` return them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.features import FeatureParams, mel_band_edges
from dgmix.scoring.backends import fit_backend
from dgmix.scoring.detector import Detector, DetectorInfo
from dgmix.scoring.explain import explain_frames, pooling_weights
from dgmix.scoring.pooling import pool

SR = 16000
TONE_HZ, T0, T1 = 2500.0, 4.0, 4.3  # the injected event: a tone from T0 to T1 seconds


def _noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Machine-like noise: white noise through a gentle low-pass, with a steady hum."""
    n = int(seconds * SR)
    x = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    t = np.arange(n) / SR
    return (0.1 * x + 0.05 * np.sin(2 * np.pi * 120 * t)).astype(np.float32)


def _with_event(x: np.ndarray, amplitude: float = 0.3) -> np.ndarray:
    y = x.copy()
    t = np.arange(len(y)) / SR
    on = (t >= T0) & (t < T1)
    y[on] += amplitude * np.sin(2 * np.pi * TONE_HZ * t[on])
    return y


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Eight 8-s normal training clips and one test clip with the event, as WAV files."""
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("explain")
    train = []
    for i in range(8):
        path = folder / f"section_00_source_train_normal_{i:04d}.wav"
        sf.write(path, _noise(rng, 8.0), SR, subtype="FLOAT")
        train.append(path)
    test = folder / "section_00_source_test_anomaly_0000.wav"
    sf.write(test, _with_event(_noise(rng, 8.0)), SR, subtype="FLOAT")
    return train, test


def _logmel_detector(train, pooling: str, backend: str) -> Detector:
    info = DetectorInfo("logmel", "fan", "logmel", ["00"], FeatureParams(), pooling=pooling, backend=backend)
    det = Detector(info).eval()
    feats = [det.features_of(p) for p in train]
    det.backend = fit_backend(backend, False, det.clip_vectors(feats), np.zeros(len(feats), int),
                              np.zeros(len(feats), int), 1)
    return det


def _event_bins() -> set[int]:
    edges = mel_band_edges(FeatureParams())
    return {j for j in range(len(edges) - 2) if edges[j] <= TONE_HZ <= edges[j + 2]}


@pytest.mark.parametrize("pooling", ["mean", "max", "gwrp"])
@pytest.mark.parametrize("backend", ["1nn", "3nn-std", "gmm-diag", "gauss-lw"])
def test_the_map_peaks_in_the_band_and_at_the_time_of_the_event(clips, pooling, backend):
    train, test = clips
    det = _logmel_detector(train, pooling, backend)
    frames = det.features_of(test)
    e = explain_frames(det, frames, "00")
    assert e.resolved == "time-mel" and e.map.shape == frames.shape
    j, t = np.unravel_index(np.argmax(e.map), e.map.shape)
    hop_s = 512 / SR
    assert j in _event_bins()
    assert T0 - hop_s <= t * hop_s <= T1 + hop_s
    lo, hi = e.bands_hz[0]
    assert lo <= TONE_HZ <= hi
    assert T0 - hop_s <= e.times_s[0] <= T1 + hop_s
    # the same forward pass as scoring: the same number
    assert e.score == float(det.score_features([frames], ["00"])[0])


@pytest.mark.parametrize("backend", ["1nn", "3nn-std"])
@pytest.mark.parametrize("pooling", ["mean", "max", "gwrp"])
def test_a_knn_map_adds_up_to_the_score(clips, pooling, backend):
    train, test = clips
    det = _logmel_detector(train, pooling, backend)
    e = explain_frames(det, det.features_of(test), "00")
    assert float(e.map.astype(np.float64).sum()) == pytest.approx(e.score, rel=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "max", "gwrp"])
def test_pooling_weights_reproduce_the_pooling(pooling):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((50, 7)))
    w = pooling_weights(x, pooling, 0.8)
    torch.testing.assert_close(w.sum(dim=0), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close((w * x).sum(dim=0), pool(x, pooling, 0.8).double())


def test_a_learned_detector_names_the_time_of_a_loud_event(tiny_detectors, tiny_synth, tmp_path):
    """The random encoder's window-level distance over time is highest on the windows with the event."""
    det = Detector.load(tiny_detectors / "random" / "fan" / "detector.pt")
    clip = sorted((tiny_synth / "fan" / "train").glob("section_00_*.wav"))[0]
    x, sr = sf.read(clip, dtype="float32")
    long = np.tile(x, 4)[: 12 * sr]  # 12 s of normal sound
    t = np.arange(len(long)) / sr
    on = (t >= 7.0) & (t < 7.5)
    long[on] += 0.5 * np.sin(2 * np.pi * 3000.0 * t[on])
    frames = det.features_of(_write(tmp_path / "explain_long.wav", long, sr))
    e = explain_frames(det, frames, "00")
    assert e.resolved == "time" and e.bands_hz == []
    assert abs(e.times_s[0] - 7.25) <= 1.1  # a window is 64 frames (2 s) long: its centre is within 1 s
    assert np.allclose(e.map, e.map[:1])  # the same value in every bin
    assert e.score == float(det.score_features([frames], ["00"])[0])


def _write(path, x, sr):
    sf.write(path, x, sr, subtype="FLOAT")
    return path


def test_score_explain_writes_png_npy_and_csv_columns(clips, tmp_path):
    train, test = clips
    det = _logmel_detector(train, "max", "1nn")
    det.thresholds.fill_(1.0)
    det.save(tmp_path / "detector.pt")
    res = CliRunner().invoke(app, ["score", str(tmp_path / "detector.pt"), str(test.parent), "--explain",
                                   str(tmp_path / "ex"), "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    png, npy = tmp_path / "ex" / f"{test.stem}.png", tmp_path / "ex" / f"{test.stem}.npy"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.load(npy).shape == (128, 1 + 8 * SR // 512)
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = {r[0]: r for r in csv.reader(fh)}
    row = rows[str(test)]
    assert len(row) == 6
    lo, hi = (float(v) for v in row[4].split(";")[0].split("-"))
    assert lo <= TONE_HZ <= hi
    assert T0 - 0.05 <= float(row[5].split(";")[0]) <= T1 + 0.05
    assert "bands" in res.output and f"{lo:.0f}-{hi:.0f}" in res.output


def test_explain_with_onnx_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(app, ["score", "--onnx", str(tmp_path / "d.onnx"), str(tmp_path), "--explain",
                                   str(tmp_path / "ex")])
    assert res.exit_code == 2 and "--explain needs the detector.pt" in res.output


def test_serve_returns_the_strongest_bands_and_times(clips):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from dgmix.serve.app import create_app
    from dgmix.serve.service import ScoringService

    train, test = clips
    det = _logmel_detector(train, "max", "1nn")
    client = TestClient(create_app(ScoringService(det, "detector.pt")))
    body = test.read_bytes()
    plain = client.post(f"/score?filename={test.name}", content=body).json()
    assert "explanation" not in plain and "p_value" in plain
    got = client.post(f"/score?explain=1&filename={test.name}", content=body).json()
    assert got["score"] == plain["score"]
    ex = got["explanation"]
    assert ex["resolved"] == "time-mel" and len(ex["bands_hz"]) == 3 and len(ex["times_s"]) == 3
    assert ex["bands_hz"][0][0] <= TONE_HZ <= ex["bands_hz"][0][1]
    assert T0 - 0.05 <= ex["times_s"][0] <= T1 + 0.05
    json.dumps(got)  # plain JSON
