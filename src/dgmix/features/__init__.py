"""Features stage: log-mel spectrograms, context windows and the on-disk feature cache.

Paper Sec. 3.1 and the official baseline: STFT 1024/512 at 16 kHz, 128 Slaney mel bins, ``10*log10(mel + eps)``,
context windows of P = 64 frames shifted by L = 8 frames (32 windows per 10-s clip).

Public names (docs/architecture.md): :class:`FeatureParams`, :class:`LogMel`, :func:`log_mel`,
:func:`n_windows`, :class:`WindowIndex`, :class:`WindowDataset`, :func:`clip_windows`,
:class:`FeatureCache`, :class:`FillReport`, :func:`fill_cache`, :func:`clip_logmel` (one clip file ->
log-mel, shared by the cache and detector bundles), :func:`loader_options`.
"""

from .cache import FeatureCache, content_hash
from .extract import clip_logmel, loader_options
from .fill import FillReport, fill_cache
from .logmel import EPS, FeatureParams, LogMel, log_mel, mel_band_edges, mel_filterbank
from .windows import WindowDataset, WindowIndex, clip_windows, n_windows

__all__ = [
    "EPS",
    "FeatureCache",
    "FeatureParams",
    "FillReport",
    "LogMel",
    "WindowDataset",
    "WindowIndex",
    "clip_logmel",
    "clip_windows",
    "content_hash",
    "fill_cache",
    "loader_options",
    "log_mel",
    "mel_band_edges",
    "mel_filterbank",
    "n_windows",
]
