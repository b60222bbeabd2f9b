"""Phase accumulators and wavetables: periodic components of the synthetic machine sounds.

A periodic component (a set of harmonics, or a periodic train of decaying bursts) is one period
stored in a table of :data:`TABLE_SIZE` samples, read at a running phase held in an int64 phase
accumulator (:data:`ONE_CYCLE` per cycle). :func:`rotation` and :func:`rotation_from_freq` build
such phases (with slow speed drift and ripple); :func:`read_table`, :func:`sine` and
:func:`scale_phase` read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

#: A running phase is an int64 "phase accumulator" in which one cycle is 2**PHASE_BITS.
PHASE_BITS = 32
ONE_CYCLE = 1 << PHASE_BITS
#: Samples in one wavetable period is 2**TABLE_BITS (a power of two: the index wraps by masking).
TABLE_BITS = 14
TABLE_SIZE = 1 << TABLE_BITS
_MASK = TABLE_SIZE - 1
_SHIFT = PHASE_BITS - TABLE_BITS
#: Steps of the piecewise-constant speed drift of :func:`rotation`.
DRIFT_POINTS = 40


def _nearest(x: float) -> int:
    """Nearest integer as a Python int (also for numpy scalars, any numpy version)."""
    return int(np.floor(x + 0.5))


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` plus 1e-12 (safe to divide by)."""
    return float(np.sqrt(np.dot(x, x) / x.shape[0])) + 1e-12


def frozen(a: np.ndarray) -> np.ndarray:
    """Mark ``a`` read-only (it is shared through a cache) and return it."""
    a.flags.writeable = False
    return a


def harmonic_table(harmonics: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """One period of ``sum_k a_k sin(2 pi k x + phi_k)``, ``x`` in [0, 1), as a wavetable.

    Args:
        harmonics: ``(k, amplitude, phase)`` triples; ``k`` is rounded to a whole harmonic number;
            terms outside ``1 <= k < TABLE_SIZE / 2`` are skipped.
    """
    spec = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    for k, amp, phase in harmonics:
        if 1 <= _nearest(k) < TABLE_SIZE // 2:
            # irfft(X)[m] = (1/N) sum ... ; a sine of amplitude a needs X[k] = -1j * a * N / 2.
            spec[_nearest(k)] += -1j * amp * (TABLE_SIZE / 2) * np.exp(1j * phase)
    return np.fft.irfft(spec, TABLE_SIZE).astype(np.float32)


def periodic(harmonics: Sequence[tuple[float, float, float]], acc: np.ndarray) -> np.ndarray:
    """The :func:`harmonic_table` of ``harmonics`` read at the phase accumulator ``acc``."""
    return read_table(harmonic_table(harmonics), acc)


def tone(harmonics: Sequence[tuple[float, float, float]], acc: np.ndarray) -> np.ndarray:
    """:func:`periodic`, scaled to unit RMS."""
    x = periodic(harmonics, acc)
    x /= rms(x)
    return x


def random_phases(rng: np.random.Generator, lines: Iterable, span: float = 6.28) -> list[tuple[float, float, float]]:
    """``(k, amplitude, phase)`` triples for ``(k, amplitude)`` pairs, phases uniform in ``[0, span)``."""
    return [(k, a, rng.random() * span) for k, a in lines]


@lru_cache(maxsize=256)
def burst_table(sr: int, rate_hz: float, freqs: tuple[float, ...], tau_s: float, bursts=((0.0, 1.0),)) -> np.ndarray:
    """One period of a periodic train of decaying bursts (impacts, defect impulses, knocks).

    The period lasts ``1 / rate_hz`` seconds; a burst starts at each ``(offset, weight)`` of
    ``bursts`` (offset a fraction of the period) and is a sum of exponentially decaying sines at
    ``freqs`` (Hz) with time constant ``tau_s``, wrapped around the period. Peak-normalised to 1.
    Cached: pass rounded arguments.
    """
    period = 1.0 / rate_hz
    x = np.arange(TABLE_SIZE, dtype=np.float64) / TABLE_SIZE
    y = np.zeros_like(x)
    for off, wt in bursts:
        t = ((x - off) % 1.0) * period
        env = np.exp(-t / tau_s)
        for i, f in enumerate(freqs):
            y += wt * env * np.sin(2.0 * np.pi * f * t + 0.7 * i) / (1.0 + i)
    peak = np.max(np.abs(y))
    return frozen((y / peak if peak > 0 else y).astype(np.float32))


def read_table(table: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Read a wavetable at the phase accumulator ``acc`` (nearest-sample look-up, float32)."""
    idx = acc >> _SHIFT
    np.bitwise_and(idx, _MASK, out=idx)
    return table.take(idx)


def scale_phase(acc: np.ndarray, ratio: float, offset: float = 0.0) -> np.ndarray:
    """Phase of a component turning ``ratio`` times as fast as ``acc`` (e.g. a gear, a defect).

    ``offset`` (cycles) shifts its start phase.
    """
    if float(ratio).is_integer():
        out = acc * int(ratio)
    else:
        out = np.empty_like(acc)
        np.multiply(acc, float(ratio), out=out, casting="unsafe")  # float64 product -> int64
    out += int(offset * ONE_CYCLE)
    return out


def rotation_from_freq(sr: int, freq: np.ndarray, start: float = 0.0) -> np.ndarray:
    """Phase accumulator of an instantaneous frequency given per sample (Hz, < sr / 2)."""
    acc = np.empty(np.shape(freq), dtype=np.int64)
    np.multiply(np.asarray(freq, dtype=np.float32), np.float32(ONE_CYCLE / sr), out=acc, casting="unsafe")
    first = int(acc[0])
    np.cumsum(acc, out=acc)
    acc += int(start * ONE_CYCLE) - first
    return acc


def rotation(
    rng: np.random.Generator, n: int, sr: int, f0: float, drift: float = 0.0, wobble: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Phase accumulator of a rotation at ``f0`` Hz with slow speed variation.

    The instantaneous frequency is ``f0 * (1 + d(t) + w sin(2 pi f_w t))``: ``d`` is a
    piecewise-constant random drift (:data:`DRIFT_POINTS` steps, std ``drift``) and
    ``wobble = (w, f_w)`` a periodic speed ripple (a toy car on an uneven track). The start
    phase is random.
    """
    start = rng.random()
    w, fw = wobble
    if drift <= 0.0 and not (w > 0.0 and fw > 0.0):
        return np.arange(n, dtype=np.int64) * _nearest(f0 / sr * ONE_CYCLE) + int(start * ONE_CYCLE)
    freq = np.full(n, f0, dtype=np.float32)
    if drift > 0.0:
        d = rng.normal(0.0, drift, DRIFT_POINTS).astype(np.float32)
        freq *= 1.0 + np.repeat(d, -(-n // DRIFT_POINTS))[:n]
    if w > 0.0 and fw > 0.0:
        freq *= 1.0 + np.float32(w) * sine(rotation(rng, n, sr, fw))
    return rotation_from_freq(sr, freq, start)


def sine(acc: np.ndarray) -> np.ndarray:
    """``sin(2 pi phase)`` by table look-up."""
    return read_table(_SINE_TABLE, acc)


_SINE_TABLE = frozen(harmonic_table([(1, 1.0, 0.0)]))
