"""Per-mel-bin input standardisation in front of the encoder (issue 10 option, not in the paper).

The paper feeds log-mel windows in dB straight into the Table 1 encoder (§3.1-3.2). Values around
-37 dB then meet the zero padding of the first 3x3 convolution as a +37 dB step at every window
edge, and bins with large mean level dominate the first layer. With ``model.input_norm:
per_bin`` the encoder first maps each mel bin ``m`` to ``(x_m - mean_m) / std_m``, with the mean
and standard deviation over every frame of the machine type's *training* clips. The statistics are
buffers of the encoder, so they travel in every checkpoint and detector bundle and scoring uses
exactly the training statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["InputNorm", "fit_input_norm"]


class InputNorm(nn.Module):
    """``(x - mean[m]) / std[m]`` over mel bin ``m`` of ``(N, C, n_mels, frames)`` inputs.

    Starts as the identity (mean 0, std 1) until :meth:`fit` is called.
    """

    def __init__(self, n_mels: int, min_std: float = 1e-3) -> None:
        super().__init__()
        if n_mels < 1:
            raise ValueError(f"n_mels must be >= 1, got {n_mels}")
        self.n_mels = int(n_mels)
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(self.n_mels))
        self.register_buffer("std", torch.ones(self.n_mels))

    @torch.no_grad()
    def fit(self, features: Sequence[np.ndarray]) -> None:
        """Set the statistics from clips of shape ``(n_mels, n_frames)`` (every frame counts once).

        Accumulated in float64 per clip, so memory stays at one clip."""
        total = np.zeros(self.n_mels)
        sq = np.zeros(self.n_mels)
        count = 0
        for f in features:
            f = np.asarray(f, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] != self.n_mels:
                raise ValueError(f"expected features of shape ({self.n_mels}, frames), got {f.shape}")
            total += f.sum(axis=1)
            sq += np.square(f).sum(axis=1)
            count += f.shape[1]
        if count == 0:
            raise ValueError("no frame to estimate the input statistics on")
        mean = total / count
        var = np.maximum(sq / count - np.square(mean), 0.0)
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(np.maximum(np.sqrt(var), self.min_std)))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, 1, self.n_mels, 1)
        return (x - self.mean.view(shape).to(x.dtype)) / self.std.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"n_mels={self.n_mels}"


def fit_input_norm(encoder: nn.Module, features: Sequence[np.ndarray]) -> bool:
    """Fit ``encoder.input_norm`` on ``features`` when the encoder has one; True if it did."""
    norm = getattr(encoder, "input_norm", None)
    if norm is None:
        return False
    norm.fit(features)
    return True
