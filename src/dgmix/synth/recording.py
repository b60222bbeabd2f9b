"""Recording chain: microphone response and factory background, and conversion to 16-bit PCM.

One final FFT pass (:func:`record`) applies the microphone's frequency response (:class:`Mic`)
to the machine sound and adds the factory background (:class:`Background`) at the requested SNR
in the frequency domain; :func:`to_pcm16` turns the result into wav samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from dgmix.synth.events import add_events, damped_kernel
from dgmix.synth.spectral import band, noise_spectrum, rfft_freqs, tilt
from dgmix.synth.wavetables import _nearest, frozen


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
    h *= 10.0 ** (mic.tilt_db_oct * np.log2(f / 1000.0) / 20.0)
    h *= 1.0 + mic.reflect_gain * np.exp(-2j * np.pi * f * mic.reflect_ms / 1000.0)
    if mic.lowpass_hz > 0.0:
        h /= 1.0 + (f / mic.lowpass_hz) ** 2
    if mic.highpass_hz > 0.0:
        r = (f / mic.highpass_hz) ** 2
        h *= r / (1.0 + r)
    return frozen(h.astype(np.complex64))


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
def _background_shape(n: int, sr: int, colour: float, band_hz: float, band_db: float) -> np.ndarray:
    f = rfft_freqs(n, sr)
    mag = tilt(f, colour)
    if band_hz > 0.0:
        ref = mag[min(int(np.searchsorted(f, band_hz)), mag.shape[0] - 1)]
        mag = mag + 10.0 ** (band_db / 20.0) * ref * band(f, band_hz, 0.5)
    return frozen((mag * (f > 25.0)).astype(np.float32))  # no DC / sub-sonic rumble


def _power(spec: np.ndarray, n: int) -> float:
    """Mean-square value of the real length-``n`` signal whose half spectrum is ``spec``."""
    return 2.0 * float(np.vdot(spec, spec).real) / (n * n)


def record(
    rng: np.random.Generator, machine: np.ndarray, sr: int, mic: Mic, bg: Background, level_db: float,
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
    flat = mic == Mic()
    spec = np.zeros(m, dtype=np.complex64) if flat else sfft.rfft(machine * np.float32(scale))
    for shape, r in noises:
        extra = noise_spectrum(rng, shape)
        spec += extra * np.float32(scale * r / np.sqrt(max(_power(extra, n), 1e-30)))
    if flat:
        p_machine = scale * scale * p_time
    else:
        spec *= mic_response(n, sr, mic)
        p_machine = _power(spec, n)
    noise = noise_spectrum(rng, _background_shape(n, sr, bg.colour, bg.band_hz, bg.band_db))
    p_noise = _power(noise, n)
    # The background does not depend on the mic position: its level is set from the machine
    # power at a 0 dB mic, so a farther mic (negative gain) lowers the SNR by its gain.
    p_ref = p_machine * 10.0 ** (-mic.gain_db / 10.0)
    g = np.sqrt(p_ref / max(p_noise, 1e-30) * 10.0 ** (-bg.snr_db / 10.0))
    spec += noise * np.float32(g)
    noise_rms = g * np.sqrt(p_noise)
    # Mains hum (none if hum_hz is 0): three harmonics placed straight into the spectrum (nearest bins).
    a = noise_rms * 10.0 ** (bg.hum_db / 20.0)
    for k, rel in ((1, 1.0), (2, 0.5), (3, 0.3)):
        b = _nearest(k * bg.hum_hz * n / sr)
        if 0 < b < m - 1:
            spec[b] += -0.5j * a * rel * n * np.exp(2j * np.pi * rng.random())
    x = sfft.irfft(spec, n, overwrite_x=True)
    if flat:
        x += machine * np.float32(scale)
    k = rng.poisson(bg.clank_rate * n / sr)
    pos = rng.integers(0, n, k)
    amp = noise_rms * 10.0 ** (bg.clank_db / 20.0) * rng.uniform(0.3, 1.0, k)
    for p, a in zip(pos, amp, strict=True):
        ker = damped_kernel(sr, float(rng.choice([420.0, 910.0, 1730.0, 2650.0])), 0.025, 120.0)
        add_events(x, sr, [p / sr], ker, [a])
    return x.astype(np.float32, copy=False)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float (nominal range [-1, 1]) to int16 with clipping; rounds to nearest."""
    return np.clip(np.rint(np.multiply(x, np.float32(32768.0), dtype=np.float32)), -32768.0, 32767.0).astype(np.int16)
