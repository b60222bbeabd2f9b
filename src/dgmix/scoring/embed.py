"""From clip spectrograms to window embeddings, and the baseline's classifier score.

Paper §3.5: a clip's embedding is the mean of the encoder outputs of its windows (32 for a 10-s
clip); other poolings live in :mod:`dgmix.scoring.pooling`. Windows of many clips are batched
together for the encoder and split back per clip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dgmix.errors import InputError
from dgmix.features import WindowDataset

EPS = float(np.finfo(np.float32).eps)


def resolve_device(name: str) -> str:
    """``scoring.device`` as a torch device string: "auto" is CUDA when available, else CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise InputError("device", f"must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "is cuda but no CUDA device is available")
    return name


@torch.inference_mode()
def window_outputs(
    fn: Callable[[torch.Tensor], torch.Tensor],
    features: Sequence[np.ndarray],
    frames: int = 64,
    hop: int = 8,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
) -> list[torch.Tensor]:
    """Apply ``fn`` to every window of every clip; returns one ``(W_i, D)`` CPU tensor per clip.

    Batches go in channels-last layout by default: the same numbers, faster convolutions on CPU
    (see BENCHMARKS.md)."""
    ds = WindowDataset(features, frames=frames, hop=hop)
    total = len(ds)
    outs: list[torch.Tensor] = []
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, total, batch_size):
        idx = np.arange(start, min(start + batch_size, total))
        outs.append(fn(ds.batch(idx).to(device).contiguous(memory_format=fmt)).float().cpu())
    flat = torch.cat(outs) if outs else torch.empty(0)
    counts = ds.index.counts.tolist()
    return list(torch.split(flat, counts)) if counts else []


def encoder_windows(
    encoder: nn.Module,
    features: Sequence[np.ndarray],
    frames: int = 64,
    hop: int = 8,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Encoder output (paper: 320-d) of every window of every clip, in eval mode."""
    was_training = encoder.training
    encoder.eval().to(device)
    try:
        return window_outputs(encoder, features, frames, hop, batch_size, device)
    finally:
        encoder.train(was_training)


def logmel_frames(features: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """The ``logmel`` method's "window embeddings": every log-mel frame of a clip, ``(T, n_mels)``.

    Pooling these over time gives the simple detectors (e.g. max over time, or mean and std).
    """
    return [torch.from_numpy(np.ascontiguousarray(f.T, dtype=np.float32)) for f in features]


@torch.inference_mode()
def classifier_scores(
    encoder: nn.Module,
    classifier: nn.Module,
    features: Sequence[np.ndarray],
    sections: Sequence[int],
    frames: int = 64,
    hop: int = 8,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The official baseline's anomaly score (SPEC §7): mean over windows of log((1 - p) / p),
    with p the softmax probability of the clip's own section."""
    model = nn.Sequential(encoder, classifier)
    was_training = model.training
    model.eval().to(device)
    try:
        logits = window_outputs(model, features, frames, hop, batch_size, device)
    finally:
        model.train(was_training)
    scores = np.empty(len(logits))
    for i, (lg, s) in enumerate(zip(logits, sections)):
        p = torch.softmax(lg.double(), dim=1)[:, int(s)].clamp(EPS, 1 - EPS)
        scores[i] = float(torch.log((1 - p) / p).mean())
    return scores
