"""Log-mel front end (paper §3.1) against librosa, the reference definition."""

from __future__ import annotations

import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from dgmix.features import FeatureParams, LogMel, log_mel, mel_filterbank

FIXTURE = Path(__file__).parent / "fixtures" / "real_valve_2s.wav"
EPS = sys.float_info.epsilon
TOL_DB = 1e-3


def librosa_log_mel(y: np.ndarray, power: float = 2.0, **kw) -> np.ndarray:
    """The reference: librosa melspectrogram with current defaults, then the baseline's log."""
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=kw.pop("n_mels", 128), power=power, **kw
    )
    return 20.0 / power * np.log10(mel + EPS)


def generated_clip(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Two tones + white noise, a near-silent stretch (-100 dB) and an exactly silent stretch."""
    sr = 16000
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 3000.0 * t + 0.3)
    y += 0.01 * rng.standard_normal(t.size)
    y[sr : sr + 8000] *= 1e-5
    y[2 * sr : 2 * sr + 4000] = 0.0
    return y.astype(np.float32)


def test_filterbank_matches_librosa() -> None:
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128, dtype=np.float64)
    ours = mel_filterbank(FeatureParams())
    assert ours.shape == (128, 513)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    # other band edges (not a setting: the front end uses 0 Hz to Nyquist) follow the same formula
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=50.0, fmax=7000.0,
                              dtype=np.float64)
    np.testing.assert_allclose(mel_filterbank(FeatureParams(n_mels=64), fmin=50.0, fmax=7000.0), ref,
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_generated_clip(dtype: torch.dtype) -> None:
    y = generated_clip()
    ref = librosa_log_mel(y.astype(np.float64))
    assert ref.min() < -150  # the silent stretch reaches the eps floor
    out = log_mel(y, dtype=dtype)
    assert out.shape == ref.shape == (128, 1 + y.size // 512)
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() <= TOL_DB


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_real_recording(dtype: torch.dtype) -> None:
    y, sr = sf.read(FIXTURE, dtype="float32")
    assert sr == 16000 and y.shape == (32000,)
    ref = librosa_log_mel(y.astype(np.float64))
    out = log_mel(y, dtype=dtype)
    assert out.shape == ref.shape == (128, 63)
    assert np.abs(out - ref).max() <= TOL_DB
    # librosa fed float32 samples (its own complex64 path) agrees too
    assert np.abs(out - librosa_log_mel(y)).max() <= TOL_DB


def test_parity_other_settings() -> None:
    """Fewer mel bins and a shorter hop still follow librosa."""
    y = generated_clip(1.0, seed=1)
    p = FeatureParams(n_mels=64, hop_length=256)
    out = log_mel(y, params=p)
    mel = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=16000, n_fft=1024, hop_length=256,
                                         n_mels=64, power=2.0)
    assert np.abs(out - 10.0 * np.log10(mel + EPS)).max() <= TOL_DB


def test_ten_seconds_gives_313_frames() -> None:
    y = np.random.default_rng(2).standard_normal(160000).astype(np.float32) * 0.01
    out = log_mel(y)
    assert out.shape == (128, 313)
    assert FeatureParams().n_frames(160000) == 313


def test_batch_matches_single() -> None:
    rng = np.random.default_rng(3)
    clips = rng.standard_normal((3, 24000)).astype(np.float32) * np.array([[1.0], [0.01], [1e-4]],
                                                                           dtype=np.float32)
    module = LogMel(FeatureParams())
    with torch.no_grad():
        batched = module(torch.from_numpy(clips))
    assert batched.shape == (3, 128, 47) and batched.dtype == torch.float32
    for i in range(3):
        single = log_mel(clips[i])
        np.testing.assert_allclose(batched[i].numpy(), single, atol=1e-4, rtol=0)


def test_tensor_in_tensor_out_and_float64_input() -> None:
    y = generated_clip(1.0)
    out_t = log_mel(torch.from_numpy(y))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    out_n = log_mel(y.astype(np.float64))
    assert isinstance(out_n, np.ndarray) and out_n.dtype == np.float32
    np.testing.assert_allclose(out_t.numpy(), out_n, atol=1e-3, rtol=0)


def test_filterbank_is_a_buffer_and_follows_the_module() -> None:
    module = LogMel()
    buffers = dict(module.named_buffers())
    assert "mel_basis" in buffers and buffers["mel_basis"].shape == (128, 513)
    assert "mel_basis" in module.state_dict()
    assert not list(module.parameters())
    m64 = LogMel(dtype=torch.float64)
    assert m64.mel_basis.dtype == torch.float64
    assert m64(torch.zeros(1, 2048)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    y = generated_clip(2.0)
    cpu = LogMel()(torch.from_numpy(y)[None])
    cuda = LogMel().cuda()(torch.from_numpy(y)[None].cuda())
    assert cuda.device.type == "cuda"
    assert (cuda.cpu() - cpu).abs().max().item() <= TOL_DB
    out = log_mel(torch.from_numpy(y).cuda())
    assert out.device.type == "cuda"


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="22050 Hz.*16000 Hz"):
        log_mel(np.zeros(1000, dtype=np.float32), sample_rate=22050)
    with pytest.raises(ValueError, match="1-D"):
        log_mel(np.zeros((2, 1000), dtype=np.float32))
    with pytest.raises(ValueError, match="floating"):
        log_mel(np.zeros(1000, dtype=np.int16))
    with pytest.raises(ValueError, match="empty"):
        log_mel(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(torch.zeros(1000))


def test_feature_params_key_and_dict() -> None:
    p = FeatureParams()
    assert p.key() == FeatureParams().key()
    assert len(p.key()) == 16
    assert p.key() != FeatureParams(n_mels=64).key()
    assert p.key() != FeatureParams(frames=32).key()
    # windowing fields do not change the spectrogram key; spectrogram fields do
    assert p.spectrogram_key() == FeatureParams(frames=32, window_hop=4).spectrogram_key()
    assert p.spectrogram_key() != FeatureParams(hop_length=256).spectrogram_key()
    # the key values of the settings before power, fmin and fmax became constants (caches stay valid)
    assert (p.key(), p.spectrogram_key()) == ("b9c5fcb80bfa1b04", "19d7cb73271ff3d8")
    d = p.to_dict()
    assert d["n_fft"] == 1024 and "fmax" not in d and "power" not in d
    assert FeatureParams.from_dict(d) == p
    with pytest.raises(ValueError, match="unknown field"):
        FeatureParams.from_dict({**d, "nmels": 64})
    with pytest.raises(ValueError, match="n_mels"):
        FeatureParams(n_mels=0)
    with pytest.raises(TypeError):
        FeatureParams(fmax=9000.0)  # type: ignore[call-arg]  # a constant, not a field
    with pytest.raises(AttributeError):
        p.n_mels = 64  # type: ignore[misc]
