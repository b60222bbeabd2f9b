"""Discrete events: decaying impact kernels placed at sample positions, and trapezoid gates.

Clicks, knocks and clanks are a cached :func:`damped_kernel` added at event times with
:func:`add_events`; on/off envelopes (valve open, slider stroke) come from :func:`gate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from dgmix.synth.wavetables import _nearest, frozen


@lru_cache(maxsize=64)
def damped_kernel(sr: int, freq: float, tau_s: float, thump_hz: float = 0.0) -> np.ndarray:
    """Peak-normalised decaying sine at ``freq`` Hz (plus an optional low 'thump' component)."""
    t = np.arange(max(8, int(5.0 * tau_s * sr))) / sr
    y = np.sin(2.0 * np.pi * freq * t) * np.exp(-t / tau_s)
    if thump_hz > 0.0:
        y += 0.8 * np.sin(2.0 * np.pi * thump_hz * t) * np.exp(-t / (2.5 * tau_s))
    y /= np.max(np.abs(y))
    return frozen(y.astype(np.float32))


def add_events(x: np.ndarray, sr: int, times: Sequence[float], kernel: np.ndarray, amps: Sequence[float]) -> None:
    """Add ``amps[i] * kernel`` to ``x`` at each time (s, rounded to a sample; in place, clipped at both ends)."""
    n, m = x.shape[0], kernel.shape[0]
    for p, a in zip(np.round(np.asarray(times) * sr).astype(int), amps, strict=True):
        lo, hi = max(p, 0), min(p + m, n)
        if lo < hi:
            x[lo:hi] += a * kernel[lo - p : hi - p]


def gate(n: int, sr: int, intervals: Sequence[tuple[float, float]], ramp_s: float = 0.01) -> np.ndarray:
    """Envelope in [0, 1] for the ``(start, stop)`` intervals (s): trapezoids.

    Each trapezoid rises linearly from 0 at ``start - ramp_s`` to 1 at ``start``, stays 1 until
    ``stop - ramp_s`` and falls to 0 at ``stop``; overlapping intervals merge (maximum). Built
    from slices, no per-sample Python loop.
    """
    g = np.zeros(n, dtype=np.float32)
    for a, b in intervals:
        if b <= a:
            continue
        ia, ib = _nearest(a * sr), _nearest(b * sr)
        r = max(1, min(_nearest(ramp_s * sr), (ib - ia) // 2 + 1))
        # Trapezoid of ib - ia + r samples from ia - r: rise over r samples, flat 1, fall over the last r.
        up = (np.arange(r, dtype=np.float32) + 1.0) / (r + 1.0)
        shape = np.ones(ib - ia + r, dtype=np.float32)
        shape[:r] = up
        shape[-r:] = np.minimum(shape[-r:], up[::-1])
        lo = ia - r
        s0, s1 = max(0, -lo), min(shape.shape[0], n - lo)
        if s0 < s1:
            seg = g[lo + s0 : lo + s1]
            np.maximum(seg, shape[s0:s1], out=seg)
    return g
