"""Re-estimating BatchNorm statistics on real training windows ("precise BN").

A BatchNorm layer's running mean and variance are what it normalises with at scoring time. Every
learned stage (pre-training, fine-tuning, the baseline classifier; :func:`dgmix.training.common.run_stage`)
ends by re-estimating its encoder's statistics here before the encoder is saved, and the ``random``
control method gives a randomly initialised encoder its statistics the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dgmix.features import WindowDataset


def _input_format(module: nn.Module) -> torch.memory_format:
    """Channels-last when the module's convolutions are (as in every training stage), else contiguous."""
    for p in module.parameters():
        if p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
    return torch.contiguous_format


@torch.no_grad()
def reestimate_batchnorm(
    module: nn.Module, features: Sequence[np.ndarray], frames: int, hop: int, batch_size: int = 256,
    max_windows: int | None = 8192, seed: int = 0,
) -> int:
    """Replace every BatchNorm's running statistics by statistics of its inputs over the windows of
    ``features`` (at most ``max_windows``, a seeded random subset, in random order): real,
    unmixed, un-augmented training windows.

    torch's cumulative moving average (``momentum=None``) is used: the running mean and variance
    become the averages, over batches of ``batch_size`` windows, of the batch mean and unbiased
    batch variance. Only the running statistics change (no parameter, no gradient). The module is
    left in eval mode. Returns the number of windows used.

    Why every learned stage does this (the paper is silent on it): with BN momentum 0.1, n training
    steps leave 0.9^n of the initial running variance (1) in every layer (19 % after 16 steps, 3 %
    after 32), far above the true variances deep in the network, and in mixup training the
    statistics also average mixed batches, which scoring never sees. After a short schedule such
    as the ``cpu`` preset's the running statistics have therefore not converged, and in eval mode
    each bottleneck row shrinks the signal: the clip embeddings collapse to nearly one point (they
    differed by 1e-6 to 1e-4 of their norm) and 1-NN scores become distances at float32 rounding.
    Re-estimated, they spread like the ``random`` control's (0.29 of the norm); docs/results.md
    §5.3-5.4. After a long schedule that has converged it changes little (the statistics of real
    windows replace the mix of real and mixed ones).

    Cost: one training-mode forward pass without gradients over at most ``max_windows`` windows
    (8192; a default synthetic machine type has 1,152), i.e. less than one training epoch of a
    DCASE-size machine type. On the 2-core CPU VM a training-mode forward of the Table 1 encoder
    runs at roughly 80-200 windows/s (channels-last; the lower figure under load), so 1,152
    windows take about 6-15 s per stage and 8,192 windows about 40-100 s; on a GPU it is well
    under a second.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    ds = WindowDataset(list(features), frames=frames, hop=hop)
    n = len(ds)
    if n == 0:
        raise ValueError("no window to estimate BatchNorm statistics on")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)
    if max_windows is not None and n > max_windows:
        idx = idx[:max_windows]
    saved = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the batches seen
    device = next(module.parameters()).device
    fmt = _input_format(module)
    module.train()
    try:
        for start in range(0, len(idx), batch_size):
            module(ds.batch(idx[start:start + batch_size]).to(device).contiguous(memory_format=fmt))
    finally:
        for m, mom in saved.items():
            m.momentum = mom
        module.eval()
    return len(idx)
