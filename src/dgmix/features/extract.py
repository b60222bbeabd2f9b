"""One clip file -> its log-mel spectrogram, the same way everywhere (paper Sec. 3.1).

The feature cache (training and ``dgmix run``'s scoring) and a detector bundle scoring new clips
(``dgmix score``) both call :func:`clip_logmel`, so a clip gets bit-identical features on either
path for the same :class:`~dgmix.features.FeatureParams`: the sample rate, the loader's channel
and padding choice, the STFT/mel settings and the shortest acceptable clip all come from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .logmel import FeatureParams, LogMel

#: Loader options beyond FeatureParams that a caller may set (see dgmix.data.load_audio).
EXTRA_LOADER_KEYS: tuple[str, ...] = ("pad_to", "min_samples", "allow_silence")


def loader_options(params: FeatureParams, **extra: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`dgmix.data.load_audio` for ``params``.

    ``channel``, ``pad`` and ``allow_silence`` come from ``params``; clips shorter than one context window of
    ``params.frames`` frames are refused (or padded up to it with ``pad``) unless ``min_samples``
    says otherwise. ``extra`` may set ``pad_to``, ``min_samples`` and ``allow_silence``.
    """
    from dgmix.data import min_samples_for

    unknown = sorted(set(extra) - set(EXTRA_LOADER_KEYS))
    if unknown:
        raise ValueError(f"unknown loader option(s) {', '.join(unknown)}; known: {', '.join(EXTRA_LOADER_KEYS)}")
    options: dict[str, Any] = {
        "channel": params.channel,
        "pad": params.pad,
        "pad_to": None,
        "min_samples": min_samples_for(params.frames, params.n_fft, params.hop_length, center=True),
        "allow_silence": params.allow_silence,
    }
    options.update(extra)
    return options


def clip_problem(path: str | Path, params: FeatureParams) -> str | None:
    """Why the feature stages would refuse this clip with ``params`` (too short without padding,
    digital silence, NaN/Inf, unreadable, ...), or ``None`` if they accept it. Reads the whole clip
    with the same loader settings as :func:`clip_logmel` but computes no spectrogram."""
    from dgmix.data import load_audio
    from dgmix.errors import InputError

    try:
        load_audio(path, sample_rate=params.sample_rate, hop_length=params.hop_length, **loader_options(params))
    except InputError as exc:
        return exc.problem
    except (OSError, ValueError, RuntimeError) as exc:  # as the feature fill reports them
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def clip_logmel(
    path: str | Path, params: FeatureParams, module: LogMel | None = None, **extra: Any
) -> np.ndarray:
    """Load ``path`` with ``params``' loader settings and return its log-mel, ``(n_mels, T)`` float32.

    ``module`` is a :class:`LogMel` built from ``params`` (one is built if omitted); ``extra`` are
    loader options as in :func:`loader_options`. Raises ``InputError`` for clips that cannot be used.
    """
    from dgmix.data import load_audio

    if module is None:
        module = LogMel(params)
    elif module.params.spectrogram_key() != params.spectrogram_key():
        raise ValueError("clip_logmel: the LogMel module was built for other feature settings")
    wave = load_audio(path, sample_rate=params.sample_rate, hop_length=params.hop_length,
                      **loader_options(params, **extra))
    with torch.no_grad():
        return module(torch.from_numpy(wave).unsqueeze(0))[0].numpy()


def clip_logmel_overriding(
    path: str | Path, params: FeatureParams, module: LogMel, channel: int | None = None,
    pad: bool | None = None, allow_silence: bool | None = None,
) -> np.ndarray:
    """:func:`clip_logmel` with ``params``' loader choices (channel, padding, silence) overridden
    where given (``None`` keeps the stored one): what a saved detector does for a new clip."""
    import dataclasses

    overrides = {k: v for k, v in (("channel", channel), ("pad", pad), ("allow_silence", allow_silence))
                 if v is not None}
    return clip_logmel(path, dataclasses.replace(params, **overrides) if overrides else params, module)
