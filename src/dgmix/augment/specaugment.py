"""SpecAugment (Park et al., 2019) for the VICReg ablation (paper §4, Table 3): time
warping, frequency masking and time masking of (N, 1, F, T) log-mel batches, in plain torch
(no torchaudio). Every sample gets its own random warp and masks.

Interpretations (the DG-Mix paper gives no SpecAugment settings):

* time warp: a random centre frame c (uniform in [W, T - W)) is moved by w frames (uniform
  integer in [-W, W]); frames before and after c are stretched / squeezed linearly (a
  piecewise-linear warp of the time axis that keeps the first and last frames in place),
  resampled with linear interpolation;
* settings: the constants below (warp W = 5 frames, two frequency masks of at most 16 mel bins,
  two time masks of at most 8 frames), the defaults of :class:`SpecAugment`, which pre-training
  uses as they are (they are not config settings);
* masks: each of the ``n_freq_masks`` (``n_time_masks``) masks has a width uniform in
  [0, max width] and a uniform start, as in the SpecAugment paper; masks may overlap;
* mask value: the per-sample mean of the (warped) log-mel window. Log-mel values are in dB
  (around -100 to +20), so masking with 0 would insert an extreme value; the mean is the
  neutral choice for non-normalised features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FREQ_MASK", "N_FREQ_MASKS", "N_TIME_MASKS", "TIME_MASK", "TIME_WARP", "SpecAugment", "time_warp"]

#: Maximum time warp W, in frames.
TIME_WARP = 5
#: Maximum width of each frequency mask, in mel bins.
FREQ_MASK = 16
#: Maximum width of each time mask, in frames.
TIME_MASK = 8
#: Number of frequency masks and of time masks.
N_FREQ_MASKS = 2
N_TIME_MASKS = 2


def time_warp(x: Tensor, centre: Tensor, shift: Tensor, check: bool = True) -> Tensor:
    """Warp the last (time) axis of ``x`` (N, ..., T) piecewise-linearly, per sample.

    Output frame t reads the input at s(t), where s is piecewise linear with s(0) = 0,
    s(centre + shift) = centre and s(T - 1) = T - 1: the content at frame ``centre`` moves to
    frame ``centre + shift``. Values between frames are linearly interpolated. ``centre`` and
    ``centre + shift`` must lie in [1, T - 2] (float tensors of shape (N,) are fine); ``check``
    tests it, which reads the values on the host: :class:`SpecAugment` draws them in range and
    skips the test, so that a step on the device needs no host synchronisation (CUDA graphs).
    The warp is computed on ``centre``'s device.
    """
    n, t_len = x.shape[0], x.shape[-1]
    c = torch.as_tensor(centre, dtype=torch.float64).reshape(-1)
    d = c + torch.as_tensor(shift, dtype=torch.float64).reshape(-1)
    if c.shape != (n,) or d.shape != (n,):
        raise ValueError(f"time_warp: centre and shift must have shape ({n},)")
    if t_len < 3 or (check and bool(((c < 1) | (c > t_len - 2) | (d < 1) | (d > t_len - 2)).any())):
        raise ValueError(f"time_warp: centre and centre + shift must lie in [1, {t_len - 2}]")
    t = torch.arange(t_len, dtype=torch.float64, device=c.device).unsqueeze(0)  # (1, T)
    c, d = c.unsqueeze(1), d.unsqueeze(1)
    last = float(t_len - 1)
    src = torch.where(t <= d, t * c / d, c + (t - d) * (last - c) / (last - d))
    src = src.clamp(0.0, last)
    i0 = src.floor().long().clamp(max=t_len - 2)
    frac = (src - i0).to(x.dtype)
    view = (n,) + (1,) * (x.ndim - 2) + (t_len,)
    i0, frac = i0.to(x.device).reshape(view).expand_as(x), frac.to(x.device).reshape(view)
    lo, hi = torch.gather(x, -1, i0), torch.gather(x, -1, i0 + 1)
    return lo + frac * (hi - lo)


def _band_mask(length: int, max_width: int, count: int, n: int, gen: torch.Generator | None) -> Tensor:
    """(n, length) boolean mask: union of ``count`` random bands of width <= max_width, drawn and
    built on ``gen``'s device (the CPU without a generator)."""
    dev = gen.device if gen is not None else torch.device("cpu")
    mask = torch.zeros(n, length, dtype=torch.bool, device=dev)
    max_width = min(max_width, length)
    if max_width <= 0 or count <= 0:
        return mask
    pos = torch.arange(length, device=dev).unsqueeze(0)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (n,), generator=gen, device=dev)
        start = (torch.rand(n, generator=gen, dtype=torch.float64, device=dev)
                 * (length - width + 1).double()).floor().long()
        start = torch.minimum(start, length - width)
        mask |= (pos >= start.unsqueeze(1)) & (pos < (start + width).unsqueeze(1))
    return mask


class SpecAugment(nn.Module):
    """Per-sample SpecAugment on (N, C, F, T) batches (C = 1 for dgmix windows).

    Args (defaults: the module's constants, what pre-training uses):
        time_warp: maximum warp W in frames (0 disables warping).
        freq_mask: maximum width F of each frequency mask, in mel bins.
        time_mask: maximum width T of each time mask, in frames.
        n_freq_masks, n_time_masks: number of masks of each kind.

    ``forward(x, generator=None)``: random numbers are drawn from ``generator`` on its device (or
    from torch's global RNG on the CPU), so results are reproducible on any device. A generator on
    the batch's device (the device-resident training path) keeps the whole augmentation there,
    with no host synchronisation, so it can be captured in a CUDA graph
    (:mod:`dgmix.training.step_graph`).
    """

    def __init__(self, time_warp: int = TIME_WARP, freq_mask: int = FREQ_MASK, time_mask: int = TIME_MASK,
                 n_freq_masks: int = N_FREQ_MASKS, n_time_masks: int = N_TIME_MASKS) -> None:
        super().__init__()
        if min(time_warp, freq_mask, time_mask, n_freq_masks, n_time_masks) < 0:
            raise ValueError("SpecAugment: widths and mask counts must be >= 0")
        self.time_warp = int(time_warp)
        self.freq_mask, self.time_mask = int(freq_mask), int(time_mask)
        self.n_freq_masks, self.n_time_masks = int(n_freq_masks), int(n_time_masks)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"SpecAugment expects (N, C, F, T) input, got {tuple(x.shape)}")
        n, _, f_len, t_len = x.shape
        if n == 0:
            return x
        out = x
        w = self.time_warp
        dev = generator.device if generator is not None else torch.device("cpu")
        if w > 0 and t_len > 2 * w + 2:
            centre = torch.randint(w, t_len - w, (n,), generator=generator, device=dev)
            shift = torch.randint(-w, w + 1, (n,), generator=generator, device=dev)
            dest = (centre + shift).clamp(1, t_len - 2)
            centre = centre.clamp(1, t_len - 2)
            out = time_warp(out, centre, dest - centre, check=False)  # in [1, T - 2] by the clamps
        fmask = _band_mask(f_len, self.freq_mask, self.n_freq_masks, n, generator)
        tmask = _band_mask(t_len, self.time_mask, self.n_time_masks, n, generator)
        mask = (fmask.unsqueeze(2) | tmask.unsqueeze(1)).unsqueeze(1).to(x.device)  # (N,1,F,T)
        return torch.where(mask, out.mean(dim=(1, 2, 3), keepdim=True), out)
