"""Context windows over log-mel spectrograms (paper Sec. 3.1).

Each clip's ``(n_mels, T)`` log-mel spectrogram is cut into windows of ``P = frames = 64`` frames
shifted by ``L = hop = 8`` frames. A 10-s clip has T = 313 frames and ``(313 - 64) // 8 + 1 = 32``
windows. (The paper prints ``B = ceil((P - L) / L)``, which does not give 32; we take the
count the paper's numbers imply. This is our reading of the paper.)

The model input is one channel, ``(1, n_mels, frames)``. The paper's Table 1 shows three input
channels because the Keras baseline copied the map three times; one channel carries the same
information and is cheaper.

Nothing here materialises every window: :class:`WindowIndex` maps a flat window number to
``(clip, start frame)`` by arithmetic on cumulative counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


def n_windows(n_frames: int, frames: int = 64, hop: int = 8) -> int:
    """Number of context windows in a spectrogram of ``n_frames`` frames.

    ``(n_frames - frames) // hop + 1``, or 0 when the clip is shorter than one window.
    """
    if frames <= 0 or hop <= 0:
        raise ValueError(f"frames and hop must be positive, got frames={frames}, hop={hop}")
    n_frames = int(n_frames)
    if n_frames < frames:
        return 0
    return (n_frames - frames) // hop + 1


class WindowIndex:
    """Maps a flat window index over many clips to ``(clip index, start frame)``.

    Windows are numbered clip by clip: clip 0's windows first, in time order, then clip 1's, and so
    on. Clips shorter than one window contribute none.

    Args:
        lengths: number of frames T of every clip.
        frames: window length P.
        hop: window shift L.
    """

    def __init__(self, lengths: Sequence[int], frames: int = 64, hop: int = 8) -> None:
        self.frames = int(frames)
        self.hop = int(hop)
        lengths_arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if (lengths_arr < 0).any():
            raise ValueError("WindowIndex: clip lengths must be >= 0")
        self.lengths = lengths_arr
        if self.frames <= 0 or self.hop <= 0:
            raise ValueError(f"frames and hop must be positive, got frames={frames}, hop={hop}")
        self.counts = np.where(lengths_arr >= self.frames, (lengths_arr - self.frames) // self.hop + 1, 0)
        self.counts = self.counts.astype(np.int64)
        # offsets[c] = number of windows before clip c; offsets[-1] = total.
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(clip index, start frame)`` for each flat window index (negative indices count back).

        Accepts an int or an integer array; returns two int64 arrays of the same shape.
        Raises ``IndexError`` for indices out of range.
        """
        idx = np.asarray(index)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"window indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        total = len(self)
        if idx.size and (idx.min() < -total or idx.max() >= total):
            raise IndexError(f"window index out of range for {total} windows")
        idx = np.where(idx < 0, idx + total, idx)
        clip = np.searchsorted(self.offsets, idx, side="right") - 1
        start = (idx - self.offsets[clip]) * self.hop
        return clip, start

    def __getitem__(self, index: int) -> tuple[int, int]:
        clip, start = self.locate(int(index))
        return int(clip), int(start)

    def clip_windows(self, clip: int) -> range:
        """Flat indices of the windows of one clip."""
        return range(int(self.offsets[clip]), int(self.offsets[clip + 1]))


def clip_windows(
    feature: np.ndarray | torch.Tensor, frames: int = 64, hop: int = 8
) -> np.ndarray | torch.Tensor:
    """All context windows of one clip, ``(n_mels, T) -> (n, 1, n_mels, frames)``.

    For a numpy input the result is a read-only strided view (no copy); ``torch.from_numpy`` on it
    would share memory, so use ``torch.tensor(...)`` or ``np.ascontiguousarray`` to copy. For a
    tensor input the result is a tensor view made with ``Tensor.unfold``.
    """
    if feature.ndim != 2:
        raise ValueError(f"clip_windows expects a (n_mels, T) array, got shape {tuple(feature.shape)}")
    n_mels, t = feature.shape
    n = n_windows(t, frames, hop)
    if isinstance(feature, torch.Tensor):
        if n == 0:
            return feature.new_empty((0, 1, n_mels, frames))
        return feature.unfold(1, frames, hop)[:, :n].permute(1, 0, 2).unsqueeze(1)
    feature = np.asarray(feature)
    if n == 0:
        return np.empty((0, 1, n_mels, frames), dtype=feature.dtype)
    view = np.lib.stride_tricks.sliding_window_view(feature, frames, axis=1)[:, ::hop][:, :n]
    return view.transpose(1, 0, 2)[:, None]


class WindowDataset(Dataset):
    """Torch dataset of context windows over a list of clip spectrograms.

    Item ``i`` is a float32 tensor ``(1, n_mels, frames)``, or ``(window, label)`` when clip labels
    were given (the window takes its clip's label, as a 0-d int64 tensor). The spectrograms are kept
    as given (converted to float32 only if needed); windows are sliced on demand.

    Args:
        features: per-clip ``(n_mels, T)`` arrays, all with the same ``n_mels``.
        frames: window length P (paper: 64).
        hop: window shift L (paper: 8).
        labels: optional integer label per clip (e.g. section index for fine-tuning).
    """

    def __init__(self, features: Sequence[np.ndarray], frames: int = 64, hop: int = 8,
                 labels: Sequence[int] | None = None) -> None:
        feats = []
        n_mels = None
        for k, f in enumerate(features):
            arr = np.asarray(f)
            if arr.ndim != 2:
                raise ValueError(f"WindowDataset: clip {k} has shape {arr.shape}, expected (n_mels, T)")
            if n_mels is None:
                n_mels = arr.shape[0]
            elif arr.shape[0] != n_mels:
                raise ValueError(f"WindowDataset: clip {k} has {arr.shape[0]} mel bins, clip 0 has {n_mels}")
            feats.append(np.ascontiguousarray(arr, dtype=np.float32))
        if labels is not None and len(labels) != len(feats):
            raise ValueError(f"WindowDataset: {len(labels)} labels for {len(feats)} clips")
        self.features = feats
        self.n_mels = int(n_mels) if n_mels is not None else 0
        self.frames = int(frames)
        self.hop = int(hop)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.index = WindowIndex([f.shape[1] for f in feats], self.frames, self.hop)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        clip, start = self.index[i]
        window = torch.from_numpy(self.features[clip][:, start : start + self.frames].copy()).unsqueeze(0)
        if self.labels is None:
            return window
        return window, torch.tensor(self.labels[clip])

    def batch(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Gather many windows at once: ``indices (n,) -> float32 tensor (n, 1, n_mels, frames)``."""
        clips, starts = self.index.locate(np.asarray(indices).reshape(-1))
        out = np.empty((len(clips), 1, self.n_mels, self.frames), dtype=np.float32)
        for k, (c, s) in enumerate(zip(clips.tolist(), starts.tolist())):
            out[k, 0] = self.features[c][:, s : s + self.frames]
        return torch.from_numpy(out)

    def batch_labels(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Labels of the windows ``indices`` as an int64 tensor ``(n,)``."""
        if self.labels is None:
            raise ValueError("WindowDataset has no labels")
        clips, _ = self.index.locate(np.asarray(indices).reshape(-1))
        return torch.from_numpy(self.labels[clips])

    def clip_of(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Clip index of each window in ``indices``."""
        clips, _ = self.index.locate(np.asarray(indices).reshape(-1))
        return clips
