"""Re-estimating BatchNorm statistics on real training windows.

A BatchNorm layer's running mean and variance are what it normalises with at scoring time. Two
uses: the ``random`` control method (a randomly initialised encoder whose statistics come from the
training windows, so it scores like a trained one would) and, as an option, refreshing a trained
encoder's statistics on unmixed windows (the mixup stages otherwise blend real and mixed batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dgmix.features import WindowDataset


@torch.no_grad()
def reestimate_batchnorm(
    module: nn.Module, features: Sequence[np.ndarray], frames: int, hop: int, batch_size: int = 256,
    max_windows: int | None = 8192, seed: int = 0,
) -> int:
    """Replace every BatchNorm's running statistics by statistics of its inputs over the windows of
    ``features`` (at most ``max_windows``, a seeded random subset, in random order).

    torch's cumulative moving average (``momentum=None``) is used: the running mean and variance
    become the averages, over batches of ``batch_size`` windows, of the batch mean and unbiased
    batch variance. The module is left in eval mode. Returns the number of windows used.
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
    module.train()
    try:
        for start in range(0, len(idx), batch_size):
            module(ds.batch(idx[start:start + batch_size]).to(device))
    finally:
        for m, mom in saved.items():
            m.momentum = mom
        module.eval()
    return len(idx)
