"""Device-resident training data: the frames on the device once, windows cut by index there.

Used whenever a stage trains on CUDA (:func:`use_device_data`); on a CPU the host path is used.

The host path (:meth:`dgmix.features.WindowDataset.batch`) gathers every window of a batch on the
CPU with a Python loop and copies the batch to the device at each step; on a GPU that bounds the
training step. Here the log-mel frames of every training clip of the machine type are
concatenated into one ``(n_mels, total_frames)`` tensor that is copied to the device once (a
3,000-clip machine type is about 0.5 GB in float32), together with the first column of every
window. A batch is then one gather on the device: ``frames[:, start[idx] + arange(P)]``.

With the pair, lambda and SpecAugment draws on the device too (:class:`StepData`, from a
generator of its own), the host only hands each step a slice of the epoch's index order, which is
copied to the device once per epoch. Every operation of such a step runs on the device without a
host synchronisation, which is what lets :mod:`dgmix.training.step_graph` capture the whole step
in one CUDA graph.

Under DDP every rank holds the whole machine type: a window's mixup partner may come from any
other window, so a rank cannot hold only its shard of the anchors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dgmix.augment import PairSampler, sample_lambda
from dgmix.features import WindowDataset

__all__ = ["DeviceWindows", "StepData", "beta_on_device", "draws_on_device", "use_device_data"]


def use_device_data(device: torch.device) -> bool:
    """Whether a stage training on ``device`` keeps its data there: on CUDA, yes."""
    return torch.device(device).type == "cuda"


def draws_on_device(device: torch.device) -> bool:
    """Whether a stage whose data lives on ``device`` also draws its pairs, lambda and SpecAugment
    there, from a generator of its own: on CUDA, yes. On a CPU the device-resident path (forced by
    tests) keeps the loop's draws, so that it equals the host path exactly; tests of the CUDA
    path's draws on a CPU force this too."""
    return torch.device(device).type == "cuda"


class DeviceWindows:
    """Every window of a :class:`WindowDataset`, addressable by flat index on ``device``.

    ``batch(idx)`` equals ``windows.batch(idx)`` exactly (the same float32 values, a gather and
    no arithmetic); ``labels(idx)`` equals ``windows.batch_labels(idx)``.
    """

    def __init__(self, windows: WindowDataset, device: torch.device | str) -> None:
        if len(windows) == 0:
            raise ValueError("no window to put on the device")
        self.device = torch.device(device)
        self.frames = windows.frames
        lengths = np.array([f.shape[1] for f in windows.features], dtype=np.int64)
        first_col = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        clip, start = windows.index.locate(np.arange(len(windows)))
        self.data = torch.cat([torch.from_numpy(f) for f in windows.features], dim=1).to(self.device)
        self.start = torch.from_numpy(first_col[clip] + start).to(self.device)
        self.cols = torch.arange(self.frames, device=self.device)
        self.window_labels = (None if windows.labels is None
                              else torch.from_numpy(windows.labels[clip]).to(self.device))

    def __len__(self) -> int:
        return int(self.start.numel())

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size() + self.start.numel() * 8

    def batch(self, idx: Tensor) -> Tensor:
        """Windows ``idx`` (a device int64 tensor) as ``(N, 1, n_mels, frames)``."""
        cols = self.start[idx].unsqueeze(1) + self.cols  # (N, P) frame columns
        return self.data[:, cols].permute(1, 0, 2).unsqueeze(1)

    def labels(self, idx: Tensor) -> Tensor:
        if self.window_labels is None:
            raise ValueError("these windows have no labels")
        return self.window_labels[idx]


def beta_on_device(n: int, alpha: float, generator: torch.Generator) -> Tensor:
    """One lambda ~ Beta(alpha, alpha) per pair, drawn on the generator's device: G1 / (G1 + G2)
    with G ~ Gamma(alpha, 1) (the same distribution as :func:`dgmix.augment.sample_lambda`,
    another random stream)."""
    conc = torch.full((2, n), float(alpha), device=generator.device)
    g = torch._standard_gamma(conc, generator=generator)
    return g[0] / (g[0] + g[1]).clamp_min(torch.finfo(g.dtype).tiny)


class StepData:
    """Where a training stage's windows, labels, pairs and lambda come from: the host path, or on
    CUDA (:func:`use_device_data`) the device-resident one. The pre-training and fine-tuning tasks both draw
    through it, so the two paths live in one place.

    ``clips`` is the stage's :class:`~dgmix.training.data.ClipSet`. The host path gathers windows
    with its :class:`WindowDataset` and draws pairs and lambda (:func:`sample_lambda`) with the
    loop's generator. The device path gathers with :class:`DeviceWindows` and, where
    :func:`draws_on_device` (on CUDA), draws where the data is, with its own generator
    :attr:`device_gen` seeded from the run seed and rank: pairs with
    :meth:`~dgmix.augment.PairSampler.draw_static`, lambda with :func:`beta_on_device`, and
    SpecAugment through :meth:`generator_for`. A resumed run then continues with a freshly seeded
    generator (not bit-identical to an uninterrupted one, unlike the host path). Either way the
    host gives each step a slice of the epoch's order, which the loop puts on :attr:`index_device`
    once per epoch.
    """

    def __init__(self, clips, pairs: PairSampler | None,  # noqa: ANN001 - a ClipSet
                 device: torch.device, seed: int) -> None:
        self.clips = clips  # its windows are read per step on the host path (never copied)
        self.resident = DeviceWindows(clips.windows, device) if use_device_data(device) else None
        self.index_device = device if self.resident is not None else torch.device("cpu")
        self.device_gen = (torch.Generator(device=self.index_device).manual_seed(seed)
                           if self.resident is not None and draws_on_device(self.index_device) else None)
        self.pairs = pairs.to(self.index_device) if pairs is not None else None

    def generator_for(self, generator: torch.Generator) -> torch.Generator:
        """The generator a step draws from: :attr:`device_gen` on the device path, else the loop's
        ``generator``."""
        return generator if self.device_gen is None else self.device_gen

    def pairs_and_lambda(self, idx: Tensor, generator: torch.Generator,
                         alpha: float) -> tuple[Tensor, Tensor, Tensor]:
        """(X indices, X' indices, one lambda per pair) of a mixup step, drawn in this order."""
        if self.device_gen is None:
            a, b = self.pairs(idx, generator)
            return a, b, sample_lambda(len(idx), alpha=alpha, generator=generator)
        a, b = self.pairs.draw_static(idx, self.device_gen)  # no host synchronisation: graph-safe
        return a, b, beta_on_device(len(idx), alpha, self.device_gen)

    def windows(self, idx: Tensor) -> Tensor:
        """Windows ``idx`` as ``(N, 1, n_mels, frames)``, on the device or on the host."""
        if self.resident is not None:
            return self.resident.batch(idx)
        return self.clips.windows.batch(idx.cpu().numpy())

    def labels(self, idx: Tensor) -> Tensor:
        """Classifier targets of windows ``idx``."""
        if self.resident is not None:
            return self.resident.labels(idx)
        return self.clips.windows.batch_labels(idx.cpu().numpy())
