"""dgmix.data.audio: load_audio and min_samples_for against independent references."""

from __future__ import annotations

import logging
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from dgmix.data import audio as audio_mod
from dgmix.data import audio_problem, load_audio, min_samples_for
from dgmix.errors import InputError


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def _write(path: Path, data: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def test_mono_pcm16_matches_integer_scaling(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ints = rng.integers(-20000, 20000, size=16000, dtype=np.int16)
    p = _write(tmp_path / "a.wav", ints)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1 and x.shape == (16000,)
    np.testing.assert_array_equal(x, ints.astype(np.float32) / 32768.0)


def test_stereo_mean_downmix_and_channel_pick(tmp_path: Path) -> None:
    left, right = _tone(1.0, 16000, 300, 0.4), _tone(1.0, 16000, 700, 0.2)
    p = _write(tmp_path / "st.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    ref_l, ref_r = left.astype(np.float32), right.astype(np.float32)
    np.testing.assert_allclose(load_audio(p), (ref_l + ref_r) / 2, atol=1e-7)
    np.testing.assert_array_equal(load_audio(p, channel=0), ref_l)
    np.testing.assert_array_equal(load_audio(p, channel=1), ref_r)
    with pytest.raises(InputError, match=r"st\.wav: channel 2 out of range.*2 channel"):
        load_audio(p, channel=2)
    with pytest.raises(InputError, match="out of range"):
        load_audio(p, channel=-1)


def test_eight_channel_extensible_downmix(tmp_path: Path) -> None:
    # MIMII 2019 clips are 8-channel WAVE_FORMAT_EXTENSIBLE.
    chans = np.stack([_tone(0.5, 16000, 100 * (k + 1), 0.1) for k in range(8)], axis=1)
    q = np.round(chans * 32767).astype(np.int16)
    p = tmp_path / "m.wav"
    with sf.SoundFile(str(p), "w", 16000, 8, subtype="PCM_16", format="WAV") as f:
        f.write(q)  # int16 is stored as is
    assert sf.info(str(p)).channels == 8
    ref = (q.astype(np.float64) / 32768.0).mean(axis=1)
    np.testing.assert_allclose(load_audio(p), ref, atol=1e-6)
    np.testing.assert_allclose(load_audio(p, channel=5), q[:, 5] / 32768.0, atol=1e-7)


def test_resample_44k1_to_16k_reproduces_the_tone(tmp_path: Path, caplog) -> None:
    audio_mod._RESAMPLE_LOGGED.clear()
    p = _write(tmp_path / "hi.wav", _tone(1.0, 44100, 1000.0), 44100, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="dgmix.data"):
        x = load_audio(p)
        load_audio(p)  # second time: no second message
        _write(tmp_path / "hi2.wav", _tone(0.5, 44100, 1000.0), 44100, subtype="FLOAT")
        load_audio(tmp_path / "hi2.wav")
    # 44100 -> 16000: up/down = 160/441 after dividing by gcd 100; output length ceil(n*up/down).
    assert x.shape == (16000,)
    ref = _tone(1.0, 16000, 1000.0).astype(np.float32)
    # Away from the edges (filter transients) the resampled tone is the 16 kHz tone.
    np.testing.assert_allclose(x[400:-400], ref[400:-400], atol=2e-3)
    msgs = [r.getMessage() for r in caplog.records if r.name == "dgmix.data"]
    assert len(msgs) == 1 and "44100" in msgs[0] and "16000" in msgs[0]


def test_resample_8k_upsamples(tmp_path: Path) -> None:
    p = _write(tmp_path / "lo.wav", _tone(1.0, 8000, 500.0), 8000, subtype="FLOAT")
    x = load_audio(p)
    assert x.shape == (16000,)
    ref = _tone(1.0, 16000, 500.0).astype(np.float32)
    np.testing.assert_allclose(x[200:-200], ref[200:-200], atol=2e-3)


def test_min_samples_for_matches_librosa_framing() -> None:
    s = min_samples_for()
    assert s == (64 - 1) * 512
    y = np.ones(s, dtype=np.float32)
    assert librosa.stft(y, n_fft=1024, hop_length=512, center=True).shape[1] == 64
    assert librosa.stft(y[:-1], n_fft=1024, hop_length=512, center=True).shape[1] == 63
    # 10 s clip -> 313 frames (SPEC Sec. 2)
    assert 1 + 160000 // 512 == 313
    s2 = min_samples_for(frames=8, n_fft=256, hop=128, center=False)
    y2 = np.ones(s2, dtype=np.float32)
    assert librosa.stft(y2, n_fft=256, hop_length=128, center=False).shape[1] == 8
    assert librosa.stft(y2[:-1], n_fft=256, hop_length=128, center=False).shape[1] == 7


def test_short_clip_error_and_padding(tmp_path: Path) -> None:
    p = _write(tmp_path / "short.wav", _tone(0.5, 16000))
    need = min_samples_for()
    with pytest.raises(InputError) as ei:
        load_audio(p, min_samples=need)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(p))
    assert "clip is 0.50 s, shorter than one window (64 frames = 2.02 s); pass --pad" in msg
    x = load_audio(p, min_samples=need, pad=True)
    assert x.shape == (need,)
    np.testing.assert_array_equal(x[8000:], 0)
    np.testing.assert_array_equal(x[:8000], load_audio(p))
    y = load_audio(p, min_samples=need, pad_to=40000)
    assert y.shape == (40000,)
    # pad_to alone pads; a long clip is never cut
    assert load_audio(p, pad_to=9000).shape == (9000,)
    assert load_audio(p, pad_to=100).shape == (8000,)
    assert load_audio(p, min_samples=100).shape == (8000,)


@pytest.mark.parametrize(
    "kind, pattern",
    [
        ("random", "not a readable audio file"),
        ("text", "not a readable audio file"),
        ("empty", r"empty audio file \(0 samples\)"),
        ("nan", "NaN or Inf"),
        ("inf", "NaN or Inf"),
        ("silence", "digital silence"),
        ("missing", "file not found"),
    ],
)
def test_bad_files_raise_one_line_input_error(tmp_path: Path, kind: str, pattern: str) -> None:
    p = tmp_path / f"{kind}.wav"
    if kind == "random":
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "text":
        p.write_text("this is not audio\n")
    elif kind == "empty":
        _write(p, np.zeros((0, 1)))
    elif kind in ("nan", "inf"):
        x = _tone(0.2, 16000).astype(np.float32)
        x[100] = np.nan if kind == "nan" else np.inf
        _write(p, x, subtype="FLOAT")
    elif kind == "silence":
        _write(p, np.zeros(1600))
    with pytest.raises(InputError, match=pattern) as ei:
        load_audio(p)
    assert ei.value.path == str(p)
    assert str(ei.value).startswith(f"{p}: ") and "\n" not in str(ei.value)
    assert str(p) not in ei.value.problem  # the path is said once, in front


def test_silence_allowed_on_request(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.wav", np.zeros(1600))
    x = load_audio(p, allow_silence=True)
    assert x.shape == (1600,) and not x.any()


def test_audio_problem_header_check(tmp_path: Path) -> None:
    good = _write(tmp_path / "g.wav", _tone(0.1, 16000))
    empty = _write(tmp_path / "e.wav", np.zeros((0, 1)))
    text = tmp_path / "t.wav"
    text.write_text("nope")
    assert audio_problem(good) is None
    assert audio_problem(empty) == "empty audio file (0 samples)"
    assert audio_problem(text).startswith("not a readable audio file")


def test_any_length_accepted(tmp_path: Path) -> None:
    # 12-s ToyCar/ToyTrain clips (DCASE 2023) and odd lengths pass through unchanged.
    p = _write(tmp_path / "long.wav", _tone(12.0, 16000)[:-7])
    assert load_audio(p).shape == (12 * 16000 - 7,)
