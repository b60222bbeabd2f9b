"""Vectorised building blocks for the synthetic machine sounds (see docs/synthetic-data.md).

Everything here works on whole clips with numpy (no Python loop over samples) and in float32
where precision allows, because the generator must write well over 50 ten-second clips per second
on two CPU cores. The main tricks:

* **Wavetables.** A periodic component (a set of harmonics, or a periodic train of decaying
  bursts) is one period stored in a table of :data:`TABLE_SIZE` samples, read at a running phase
  (in cycles). Many harmonics then cost one table look-up instead of one ``sin`` each, and the
  phase can follow a slowly varying speed.
* **Spectral shaping.** Stationary noise (aerodynamic, flow, background) is drawn directly as a
  random spectrum with the wanted magnitude and turned into time by one inverse real FFT.
* **One final FFT pass** (:func:`record`) applies the microphone's frequency response to the
  machine sound and adds the factory background at the requested SNR in the frequency domain.

None of this follows the DG-Mix paper; the paper uses the real DCASE 2022 data (SPEC Sec. 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

#: A running phase is an int64 "phase accumulator" in which one cycle is 2**PHASE_BITS.
PHASE_BITS = 32
ONE_CYCLE = 1 << PHASE_BITS
#: Samples in one wavetable period is 2**TABLE_BITS (a power of two: the index wraps by masking).
TABLE_BITS = 14
TABLE_SIZE = 1 << TABLE_BITS
_MASK = TABLE_SIZE - 1
_SHIFT = PHASE_BITS - TABLE_BITS


def _nearest(x: float) -> int:
    """Nearest integer as a Python int (also for numpy scalars, any numpy version)."""
    return int(np.floor(x + 0.5))


@lru_cache(maxsize=8)
def _ramp(n: int) -> np.ndarray:
    r = np.arange(n, dtype=np.int64)
    r.flags.writeable = False
    return r


@lru_cache(maxsize=8)
def _seconds(n: int, sr: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / sr
    t.flags.writeable = False
    return t


@lru_cache(maxsize=8)
def rfft_freqs(n: int, sr: int) -> np.ndarray:
    """Frequencies (Hz, float32) of the ``n // 2 + 1`` bins of a length-``n`` real FFT."""
    f = np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    f.flags.writeable = False
    return f


def harmonic_table(harmonics: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """One period of ``sum_k a_k sin(2 pi k x + phi_k)``, ``x`` in [0, 1), as a wavetable.

    Args:
        harmonics: ``(k, amplitude, phase)`` triples; ``k`` is rounded to a whole harmonic number
            (``1 <= k < TABLE_SIZE / 2``); terms with zero amplitude are skipped.
    """
    spec = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    for k, amp, phase in harmonics:
        kk = _nearest(k)
        if amp == 0.0 or not 1 <= kk < TABLE_SIZE // 2:
            continue
        # irfft(X)[m] = (1/N) sum ... ; a sine of amplitude a needs X[k] = -1j * a * N / 2.
        spec[kk] += -1j * amp * (TABLE_SIZE / 2) * np.exp(1j * phase)
    return np.fft.irfft(spec, TABLE_SIZE).astype(np.float32)


@lru_cache(maxsize=256)
def burst_table(
    sr: int,
    rate_hz: float,
    freqs: tuple[float, ...],
    tau_s: float,
    offsets: tuple[float, ...] = (0.0,),
    weights: tuple[float, ...] | None = None,
) -> np.ndarray:
    """One period of a periodic train of decaying bursts (impacts, defect impulses, knocks).

    The period lasts ``1 / rate_hz`` seconds; a burst starts at each of ``offsets`` (fractions of
    the period, weighted by ``weights``) and is a sum of exponentially decaying sines at ``freqs``
    (Hz) with time constant ``tau_s``, wrapped around the period. Peak-normalised to 1.
    Cached: pass rounded arguments.
    """
    period = 1.0 / rate_hz
    x = np.arange(TABLE_SIZE, dtype=np.float64) / TABLE_SIZE
    y = np.zeros_like(x)
    w = weights if weights is not None else (1.0,) * len(offsets)
    for off, wt in zip(offsets, w, strict=True):
        t = ((x - off) % 1.0) * period
        env = np.exp(-t / tau_s)
        for i, f in enumerate(freqs):
            y += wt * env * np.sin(2.0 * np.pi * f * t + 0.7 * i) / (1.0 + i)
    peak = np.max(np.abs(y))
    out = (y / peak if peak > 0 else y).astype(np.float32)
    out.flags.writeable = False
    return out


def read_table(table: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Read a wavetable at the phase accumulator ``acc`` (nearest-sample look-up, float32)."""
    idx = acc >> _SHIFT
    np.bitwise_and(idx, _MASK, out=idx)
    return table.take(idx)


def scale_phase(acc: np.ndarray, ratio: float) -> np.ndarray:
    """Phase of a component turning ``ratio`` times as fast as ``acc`` (e.g. a gear, a defect)."""
    if float(ratio).is_integer():
        return acc * int(ratio)
    out = np.empty_like(acc)
    np.multiply(acc, float(ratio), out=out, casting="unsafe")  # float64 product -> int64
    return out


def smooth_curve(rng: np.random.Generator, n: int, points: int, depth: float) -> np.ndarray:
    """Slow random curve: ``points`` Gaussian control values (std ``depth``), linearly joined."""
    xp = np.linspace(0.0, n, points)
    fp = rng.normal(0.0, depth, points)
    return np.interp(np.arange(n, dtype=np.float64), xp, fp).astype(np.float32)


def rotation_from_freq(
    n: int, sr: int, freq: np.ndarray, start: float = 0.0
) -> np.ndarray:
    """Phase accumulator of an instantaneous frequency given per sample (Hz, < sr / 2)."""
    acc = np.empty(np.shape(freq), dtype=np.int64)
    np.multiply(np.asarray(freq, dtype=np.float32), np.float32(ONE_CYCLE / sr), out=acc,
                casting="unsafe")
    first = int(acc[0])
    np.cumsum(acc, out=acc)
    acc += int(start * ONE_CYCLE) - first
    return acc


def rotation(
    rng: np.random.Generator,
    n: int,
    sr: int,
    f0: float,
    drift: float = 0.0,
    drift_points: int = 40,
    wobble: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Phase accumulator of a rotation at ``f0`` Hz with slow speed variation.

    The instantaneous frequency is ``f0 * (1 + d(t) + w sin(2 pi f_w t))``: ``d`` is a
    piecewise-constant random drift (``drift_points`` steps, std ``drift``) and
    ``wobble = (w, f_w)`` a periodic speed ripple (a toy car on an uneven track). The start
    phase is random.
    """
    start = rng.random()
    w, fw = wobble
    if drift <= 0.0 and not (w > 0.0 and fw > 0.0):
        inc = _nearest(f0 / sr * ONE_CYCLE)
        acc = _ramp(n) * inc
        acc += int(start * ONE_CYCLE)
        return acc
    freq = np.full(n, f0, dtype=np.float32)
    if drift > 0.0:
        seg = -(-n // drift_points)
        d = rng.normal(0.0, drift, drift_points).astype(np.float32)
        freq *= 1.0 + np.repeat(d, seg)[:n]
    if w > 0.0 and fw > 0.0:
        slow = rotation(rng, n, sr, fw)
        freq *= 1.0 + np.float32(w) * read_table(_SINE_TABLE, slow)
    return rotation_from_freq(n, sr, freq, start)


def sine(acc: np.ndarray) -> np.ndarray:
    """``sin(2 pi phase)`` by table look-up."""
    return read_table(_SINE_TABLE, acc)


def _random_spectrum(rng: np.random.Generator, m: int) -> np.ndarray:
    """``m`` complex64 bins with independent uniform real/imaginary parts in [-0.5, 0.5)."""
    u = rng.integers(-32768, 32768, (m, 2), dtype=np.int16).astype(np.float32)
    u *= np.float32(1.0 / 65536.0)
    return u.view(np.complex64)[:, 0]


def shaped_noise(rng: np.random.Generator, n: int, magnitude: np.ndarray) -> np.ndarray:
    """Unit-RMS noise whose magnitude spectrum follows ``magnitude`` (``n // 2 + 1`` bins).

    Drawn as uniform random real and imaginary parts in the frequency domain and transformed
    with one inverse FFT; every time sample is a sum over many bins, hence close to Gaussian.
    """
    spec = _random_spectrum(rng, magnitude.shape[0])
    spec *= magnitude
    x = sfft.irfft(spec, n)
    rms = float(np.sqrt(np.dot(x, x) / n))
    if rms > 0:
        x *= np.float32(1.0 / rms)
    return x


def band(freqs: np.ndarray, centre: float, width_oct: float) -> np.ndarray:
    """Log-Gaussian band-pass magnitude: 1 at ``centre`` Hz, ~0.5 at ``width_oct`` octaves away."""
    f = np.maximum(freqs, 1.0)
    z = np.log2(f / centre) / width_oct
    return np.exp(-0.693 * z * z).astype(np.float32)


def tilt(
    freqs: np.ndarray, exponent: float, f_ref: float = 1000.0, f_low: float = 20.0
) -> np.ndarray:
    """Power-law magnitude ``(f / f_ref) ** (-exponent / 2)`` (exponent 1 = pink, 2 = brown)."""
    f = np.maximum(freqs, f_low)
    return ((f / f_ref) ** (-exponent / 2.0)).astype(np.float32)


def noise_shape(n: int, sr: int, *terms: tuple[float, float, float, float]) -> np.ndarray:
    """Magnitude spectrum ``sum_i g_i * band(f, c_i, w_i) * tilt(f, e_i)`` for noise.

    Each term is ``(gain g, centre c Hz, width w octaves, tilt exponent e)``; ``w = 0`` means
    no band, ``e = 0`` no tilt. Centres are rounded to 0.5 % and the rest to 3 decimals so that
    the (cached) shapes are reused across clips with jittered speeds.
    """
    key = tuple(
        (round(g, 3), float(np.round(np.exp(np.round(np.log(max(c, 1.0)) / 0.005) * 0.005), 1)),
         round(w, 3), round(e, 3))
        for g, c, w, e in terms
    )
    return _noise_shape(n, sr, key)


@lru_cache(maxsize=512)
def _noise_shape(
    n: int, sr: int, terms: tuple[tuple[float, float, float, float], ...]
) -> np.ndarray:
    f = rfft_freqs(n, sr)
    mag = np.zeros_like(f)
    for g, c, w, e in terms:
        part = band(f, c, w) if w > 0 else np.ones_like(f)
        if e:
            part = part * tilt(f, e)
        mag += np.float32(g) * part
    mag[0] = 0.0
    mag.flags.writeable = False
    return mag


@lru_cache(maxsize=64)
def damped_kernel(sr: int, freq: float, tau_s: float, thump_hz: float = 0.0) -> np.ndarray:
    """Peak-normalised decaying sine at ``freq`` Hz (plus an optional low 'thump' component)."""
    m = max(8, int(5.0 * tau_s * sr))
    t = np.arange(m) / sr
    y = np.sin(2.0 * np.pi * freq * t) * np.exp(-t / tau_s)
    if thump_hz > 0.0:
        y += 0.8 * np.sin(2.0 * np.pi * thump_hz * t) * np.exp(-t / (2.5 * tau_s))
    y /= np.max(np.abs(y))
    y = y.astype(np.float32)
    y.flags.writeable = False
    return y


def add_events(
    x: np.ndarray, positions: Sequence[int] | np.ndarray, kernel: np.ndarray, amps: Sequence[float]
) -> None:
    """Add ``amps[i] * kernel`` to ``x`` at each sample position (in place, clipped at the end)."""
    n = x.shape[0]
    m = kernel.shape[0]
    for p, a in zip(positions, amps, strict=True):
        p = int(p)
        if p >= n or p + m <= 0:
            continue
        lo = max(p, 0)
        hi = min(p + m, n)
        x[lo:hi] += a * kernel[lo - p : hi - p]


def gate(
    n: int, sr: int, intervals: Sequence[tuple[float, float]], ramp_s: float = 0.01
) -> np.ndarray:
    """Envelope in [0, 1] for the ``(start, stop)`` intervals (s): trapezoids.

    Each trapezoid rises linearly from 0 at ``start - ramp_s`` to 1 at ``start``, stays 1 until
    ``stop - ramp_s`` and falls to 0 at ``stop``; overlapping intervals merge (maximum). Built
    from slices, no per-sample Python loop.
    """
    g = np.zeros(n, dtype=np.float32)
    for a, b in intervals:
        if b <= a:
            continue
        ia = _nearest(a * sr)
        ib = _nearest(b * sr)
        r = max(1, min(_nearest(ramp_s * sr), (ib - ia) // 2 + 1))
        shape = _trapezoid(ib - ia + r, r)
        lo = ia - r
        s0 = max(0, -lo)
        s1 = min(shape.shape[0], n - lo)
        if s1 <= s0:
            continue
        seg = g[lo + s0 : lo + s1]
        np.maximum(seg, shape[s0:s1], out=seg)
    return g


def _trapezoid(length: int, ramp: int) -> np.ndarray:
    """``length`` samples: linear rise over ``ramp``, flat 1, linear fall over the last ``ramp``."""
    y = np.ones(length, dtype=np.float32)
    up = _ramp_up(ramp)
    k = min(ramp, length)
    y[:k] = up[:k]
    y[length - k :] = np.minimum(y[length - k :], up[:k][::-1])
    return y


@lru_cache(maxsize=64)
def _ramp_up(ramp: int) -> np.ndarray:
    r = (np.arange(ramp, dtype=np.float32) + 1.0) / (ramp + 1.0)
    r.flags.writeable = False
    return r


# ---------------------------------------------------------------------------------------------
# Recording chain: microphone response and factory background
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mic:
    """Microphone position / channel: a fixed frequency response.

    Attributes:
        gain_db: Level change (distance to the machine).
        tilt_db_oct: Spectral tilt in dB per octave around 1 kHz (negative = duller).
        reflect_ms: Delay of one wall reflection (comb filter); 0 = none.
        reflect_gain: Relative amplitude of that reflection.
        lowpass_hz: Second-order-like roll-off corner (0 = none).
        highpass_hz: Second-order-like low cut corner (0 = none).
    """

    gain_db: float = 0.0
    tilt_db_oct: float = 0.0
    reflect_ms: float = 0.0
    reflect_gain: float = 0.0
    lowpass_hz: float = 0.0
    highpass_hz: float = 0.0


@lru_cache(maxsize=128)
def mic_response(n: int, sr: int, mic: Mic) -> np.ndarray:
    """Complex frequency response (``n // 2 + 1`` bins, complex64) of ``mic``."""
    f = np.maximum(rfft_freqs(n, sr).astype(np.float64), 1.0)
    h = np.full(f.shape, 10.0 ** (mic.gain_db / 20.0), dtype=np.complex128)
    if mic.tilt_db_oct:
        h *= 10.0 ** (mic.tilt_db_oct * np.log2(f / 1000.0) / 20.0)
    if mic.reflect_ms > 0.0 and mic.reflect_gain:
        h *= 1.0 + mic.reflect_gain * np.exp(-2j * np.pi * f * mic.reflect_ms / 1000.0)
    if mic.lowpass_hz > 0.0:
        h /= 1.0 + (f / mic.lowpass_hz) ** 2
    if mic.highpass_hz > 0.0:
        r = (f / mic.highpass_hz) ** 2
        h *= r / (1.0 + r)
    out = h.astype(np.complex64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class Background:
    """Factory background: coloured noise + mains hum + occasional clanks.

    Attributes:
        snr_db: Machine-to-noise power ratio of the coloured noise at a 0 dB microphone
            (a microphone with gain ``g`` dB gives an SNR ``g`` dB lower).
        colour: Power-law exponent of the noise (1 pink, 2 brown, 0 white).
        band_hz: Centre of an extra noise band (other machinery); 0 = none.
        band_db: Level of that band relative to the coloured floor.
        hum_hz: Mains hum fundamental (50 or 60; 0 = none).
        hum_db: Hum level relative to the noise RMS.
        clank_rate: Mean number of clanks (random impacts) per second.
        clank_db: Clank peak level relative to the noise RMS.
    """

    snr_db: float = 10.0
    colour: float = 1.0
    band_hz: float = 0.0
    band_db: float = 0.0
    hum_hz: float = 50.0
    hum_db: float = -6.0
    clank_rate: float = 0.3
    clank_db: float = 6.0


@lru_cache(maxsize=128)
def _background_shape(
    n: int, sr: int, colour: float, band_hz: float, band_db: float
) -> np.ndarray:
    f = rfft_freqs(n, sr)
    mag = tilt(f, colour)
    if band_hz > 0.0:
        ref = mag[min(int(np.searchsorted(f, band_hz)), mag.shape[0] - 1)]
        mag = mag + 10.0 ** (band_db / 20.0) * ref * band(f, band_hz, 0.5)
    mag = mag * (f > 25.0)  # no DC / sub-sonic rumble
    mag = mag.astype(np.float32)
    mag.flags.writeable = False
    return mag


def _power(spec: np.ndarray, n: int) -> float:
    """Mean-square value of the real length-``n`` signal whose half spectrum is ``spec``."""
    return 2.0 * float(np.vdot(spec, spec).real) / (n * n)


def _is_flat(mic: Mic) -> bool:
    return mic == Mic()


def record(
    rng: np.random.Generator,
    machine: np.ndarray,
    sr: int,
    mic: Mic,
    bg: Background,
    level_db: float,
    noises: Sequence[tuple[np.ndarray, float]] = (),
) -> np.ndarray:
    """Pass the machine sound through ``mic``, add ``bg`` and set the overall level.

    At most one forward and one inverse FFT: the machine spectrum is multiplied by the mic
    response, the coloured background noise is drawn directly in the frequency domain and scaled
    so that the machine-to-noise power ratio equals ``bg.snr_db`` at a 0 dB mic
    (``mic.gain_db`` lower otherwise: the background does not move with the mic); hum and
    clanks are added in time. The machine part is scaled to RMS ``10 ** (level_db / 20)`` before
    the mic gain (so a mic farther away really is quieter). With the flat reference mic the
    machine sound needs no forward FFT. Returns float32.

    Args:
        machine: The machine's time-domain sound (any scale).
        noises: Stationary machine noise added in the frequency domain (saves an inverse FFT
            each): ``(magnitude shape, rms)`` pairs, ``rms`` on the scale of ``machine``.
    """
    n = machine.shape[0]
    m = n // 2 + 1
    p_time = float(np.dot(machine, machine)) / n + sum(r * r for _, r in noises)
    scale = 10.0 ** (level_db / 20.0) / np.sqrt(p_time) if p_time > 0 else 1.0
    flat = _is_flat(mic)
    spec = np.zeros(m, dtype=np.complex64) if flat else sfft.rfft(machine * np.float32(scale))
    for shape, r in noises:
        extra = _random_spectrum(rng, m)
        extra *= shape
        extra *= np.float32(scale * r / np.sqrt(max(_power(extra, n), 1e-30)))
        spec += extra
    if flat:
        p_machine = scale * scale * p_time
    else:
        spec *= mic_response(n, sr, mic)
        p_machine = _power(spec, n)
    shape = _background_shape(n, sr, bg.colour, bg.band_hz, bg.band_db)
    noise = _random_spectrum(rng, m)
    noise *= shape
    p_noise = _power(noise, n)
    # The background does not depend on the mic position: its level is set from the machine
    # power at a 0 dB mic, so a farther mic (negative gain) lowers the SNR by its gain.
    p_ref = p_machine * 10.0 ** (-mic.gain_db / 10.0)
    g = np.sqrt(p_ref / max(p_noise, 1e-30) * 10.0 ** (-bg.snr_db / 10.0))
    noise *= np.float32(g)
    spec += noise
    noise_rms = g * np.sqrt(p_noise)
    if bg.hum_hz > 0.0:
        # Mains hum: three harmonics placed straight into the spectrum (nearest bins).
        a = noise_rms * 10.0 ** (bg.hum_db / 20.0)
        for k, rel in ((1, 1.0), (2, 0.5), (3, 0.3)):
            b = _nearest(k * bg.hum_hz * n / sr)
            if 0 < b < m - 1:
                spec[b] += -0.5j * a * rel * n * np.exp(2j * np.pi * rng.random())
    x = sfft.irfft(spec, n, overwrite_x=True)
    if flat:
        x += machine * np.float32(scale)
    if bg.clank_rate > 0.0:
        k = rng.poisson(bg.clank_rate * n / sr)
        if k:
            pos = rng.integers(0, n, k)
            amp = noise_rms * 10.0 ** (bg.clank_db / 20.0) * rng.uniform(0.3, 1.0, k)
            for p, a in zip(pos, amp, strict=True):
                ker = damped_kernel(sr, float(rng.choice([420.0, 910.0, 1730.0, 2650.0])), 0.025,
                                    120.0)
                add_events(x, [p], ker, [a])
    return x.astype(np.float32, copy=False)


_SINE_TABLE = harmonic_table([(1, 1.0, 0.0)])
_SINE_TABLE.flags.writeable = False


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float (nominal range [-1, 1]) to int16 with clipping; rounds to nearest."""
    y = np.multiply(x, np.float32(32768.0), dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype(np.int16)
