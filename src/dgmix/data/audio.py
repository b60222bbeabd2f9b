"""Reading clips: soundfile in, float32 mono at 16 kHz out.

DCASE clips are mono 16 kHz; MIMII 2019 clips have 8 channels; users' own recordings may have any
rate. :func:`load_audio` downmixes (mean of the channels, or one chosen channel), resamples with
``scipy.signal.resample_poly`` and rejects clips the pipeline cannot use (unreadable, empty,
NaN/Inf, digital silence, shorter than one context window unless padding is asked for).
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from dgmix.errors import InputError

logger = logging.getLogger("dgmix.data")

#: Source rates already reported by the resampling log message (once per process and rate).
_RESAMPLE_LOGGED: set[tuple[int, int]] = set()


def min_samples_for(frames: int = 64, n_fft: int = 1024, hop: int = 512, center: bool = True) -> int:
    """Fewest samples whose STFT has at least ``frames`` frames (paper Sec. 3.1: P = 64 frames).

    With librosa's ``center=True`` framing (the feature front end's), a clip of ``S`` samples gives
    ``T = 1 + S // hop`` frames, so ``S >= (frames - 1) * hop`` (32256 samples = 2.016 s for the
    defaults). With ``center=False``, ``T = 1 + (S - n_fft) // hop``, so
    ``S >= n_fft + (frames - 1) * hop``.
    """
    if frames < 1 or hop < 1 or n_fft < 1:
        raise ValueError("frames, n_fft and hop must be positive")
    return (frames - 1) * hop + (0 if center else n_fft)


def audio_problem(path: str | Path) -> str | None:
    """Check a file's header with ``soundfile.info``; return the problem, or ``None`` if usable."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        return f"not a readable audio file ({_short(e)})"
    if info.frames <= 0:
        return "empty audio file (0 samples)"
    if info.channels <= 0 or info.samplerate <= 0:
        return f"bad header ({info.channels} channels, {info.samplerate} Hz)"
    return None


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    # soundfile repeats the path in its messages; the InputError already names the file.
    text = re.sub(r"^Error opening (?:'.*?'|\S+): ", "", text).strip().rstrip(".")
    return text or type(e).__name__


def wav_declared_frames(path: Path, n_channels: int) -> int | None:
    """Frames a RIFF/WAVE file's ``data`` chunk header declares, or None (not a WAV, a streaming
    size of 0 or 0xFFFFFFFF, or no ``fmt``/``data`` chunk found in the first 64 KiB).

    libsndfile reads what is there; a file cut short (a copy that stopped, a recorder that
    crashed) would otherwise be scored as a shorter clip without a word."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return None
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "little" if head[:4] == b"RIFF" else "big"
    pos, block = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], order)
        if cid == b"fmt " and pos + 22 <= len(head):
            block = int.from_bytes(head[pos + 20:pos + 22], order)  # nBlockAlign: bytes per frame
        elif cid == b"data":
            if size in (0, 0xFFFFFFFF) or not block:
                return None
            return size // block
        pos += 8 + size + (size & 1)
    return None


def load_audio(path: str | Path, sample_rate: int = 16000, channel: int | None = None, pad_to: int | None = None,
               min_samples: int | None = None, *, pad: bool = False, allow_silence: bool = False,
               hop_length: int = 512) -> np.ndarray:
    """Read one clip as a float32 1-D array at ``sample_rate``.

    Args:
        path: The audio file (anything libsndfile reads; DCASE/MIMII clips are WAV).
        sample_rate: Rate to return. Other rates are resampled with
            ``scipy.signal.resample_poly(x, up, down)``, ``up/down = sample_rate/rate`` reduced by
            their gcd; the first resampling from each source rate is logged (logger ``dgmix.data``).
        channel: ``None``: mean of all channels; ``N``: only channel ``N`` (0-based).
        pad_to: Zero-pad clips shorter than this many samples (at the end) up to it.
        min_samples: Clips shorter than this (after resampling) raise :class:`InputError` unless
            ``pad`` or ``pad_to`` is given, in which case they are zero-padded to
            ``max(min_samples, pad_to)``. See :func:`min_samples_for`.
        pad: Zero-pad short clips up to ``min_samples`` instead of raising.
        allow_silence: Accept an all-zero (digitally silent) clip instead of raising.
        hop_length: STFT hop, only used to state the window length in the "too short" message.

    Longer clips are never cut: any length is accepted.

    Raises:
        InputError: Missing, corrupt, empty or non-audio file; ``channel`` out of range; NaN/Inf
            samples; digital silence (unless ``allow_silence``); shorter than ``min_samples``
            without padding.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises several types
        raise InputError(path, f"not a readable audio file ({_short(e)})") from e
    n_frames, n_channels = data.shape
    if n_frames == 0:
        raise InputError(path, "empty audio file (0 samples)")
    declared = wav_declared_frames(path, n_channels)
    if declared is not None and declared > n_frames:
        raise InputError(path, f"truncated WAV: its header says {declared / rate:.2f} s, the file holds "
                               f"{n_frames / rate:.2f} s (cut while copying or recording?)")
    if channel is not None and not 0 <= channel < n_channels:
        raise InputError(path, f"channel {channel} out of range (the file has {n_channels} channel(s): "
                               f"0..{n_channels - 1})")
    x = data.mean(axis=1, dtype=np.float64) if channel is None else data[:, channel]
    if not np.all(np.isfinite(x)):
        raise InputError(path, "contains NaN or Inf samples")
    if not allow_silence and not np.any(x):
        raise InputError(path, "all samples are zero (digital silence); pass --allow-silence "
                         "(features.allow_silence) to accept it")
    if rate != sample_rate:
        up, down = Fraction(int(sample_rate), int(rate)).as_integer_ratio()
        if (rate, sample_rate) not in _RESAMPLE_LOGGED:
            _RESAMPLE_LOGGED.add((rate, sample_rate))
            logger.info("resampling clips from %d Hz to %d Hz (resample_poly up=%d down=%d), "
                        "first seen in %s", rate, sample_rate, up, down, path)
        x = resample_poly(np.asarray(x, dtype=np.float64), up, down)
    x = np.ascontiguousarray(x, dtype=np.float32)
    padding = pad or pad_to is not None
    if min_samples is not None and x.shape[0] < min_samples and not padding:
        raise InputError(path, f"clip is {x.shape[0] / sample_rate:.2f} s, shorter than one window "
                         f"({1 + int(min_samples) // hop_length} frames = {min_samples / sample_rate:.2f} s); "
                         "pass --pad to zero-pad")
    target = max(pad_to or 0, (min_samples or 0) if padding else 0)
    return np.pad(x, (0, max(target - x.shape[0], 0)))
