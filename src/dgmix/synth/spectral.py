"""Spectral shaping: stationary noise drawn directly in the frequency domain.

Stationary noise (aerodynamic, flow, background) is drawn as a random spectrum with the wanted
magnitude (:func:`noise_shape`, built from :func:`band` and :func:`tilt` terms and cached) and
turned into time by one inverse real FFT (:func:`shaped_noise`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from dgmix.synth.wavetables import frozen


@lru_cache(maxsize=8)
def rfft_freqs(n: int, sr: int) -> np.ndarray:
    """Frequencies (Hz, float32) of the ``n // 2 + 1`` bins of a length-``n`` real FFT."""
    return frozen(np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32))


def noise_spectrum(rng: np.random.Generator, magnitude: np.ndarray) -> np.ndarray:
    """Random complex64 spectrum: independent uniform real/imaginary parts in [-0.5, 0.5) times ``magnitude``."""
    u = rng.integers(-32768, 32768, (magnitude.shape[0], 2), dtype=np.int16).astype(np.float32)
    u *= np.float32(1.0 / 65536.0)
    spec = u.view(np.complex64)[:, 0]
    spec *= magnitude
    return spec


def shaped_noise(rng: np.random.Generator, n: int, magnitude: np.ndarray) -> np.ndarray:
    """Unit-RMS noise whose magnitude spectrum follows ``magnitude`` (``n // 2 + 1`` bins).

    Drawn as uniform random real and imaginary parts in the frequency domain and transformed
    with one inverse FFT; every time sample is a sum over many bins, hence close to Gaussian.
    """
    x = sfft.irfft(noise_spectrum(rng, magnitude), n)
    rms = float(np.sqrt(np.dot(x, x) / n))
    if rms > 0:
        x *= np.float32(1.0 / rms)
    return x


def band_noise(rng: np.random.Generator, n: int, sr: int, centre: float, width_oct: float) -> np.ndarray:
    """Unit-RMS noise in one log-Gaussian band (:func:`band`) around ``centre`` Hz."""
    return shaped_noise(rng, n, noise_shape(n, sr, (1.0, centre, width_oct, 0.0)))


def band(freqs: np.ndarray, centre: float, width_oct: float) -> np.ndarray:
    """Log-Gaussian band-pass magnitude: 1 at ``centre`` Hz, ~0.5 at ``width_oct`` octaves away."""
    z = np.log2(np.maximum(freqs, 1.0) / centre) / width_oct
    return np.exp(-0.693 * z * z).astype(np.float32)


def tilt(freqs: np.ndarray, exponent: float) -> np.ndarray:
    """Power-law magnitude ``(f / 1 kHz) ** (-exponent / 2)`` (exponent 1 = pink, 2 = brown), flat below 20 Hz."""
    return ((np.maximum(freqs, 20.0) / 1000.0) ** (-exponent / 2.0)).astype(np.float32)


def noise_shape(n: int, sr: int, *terms: tuple[float, float, float, float]) -> np.ndarray:
    """Magnitude spectrum ``sum_i g_i * band(f, c_i, w_i) * tilt(f, e_i)`` for noise.

    Each term is ``(gain g, centre c Hz, width w octaves, tilt exponent e)``; ``w = 0`` means
    no band, ``e = 0`` no tilt. Centres are rounded to 0.5 % and the rest to 3 decimals so that
    the (cached) shapes are reused across clips with jittered speeds.
    """
    key = tuple((round(g, 3), float(np.round(np.exp(np.round(np.log(max(c, 1.0)) / 0.005) * 0.005), 1)),
                 round(w, 3), round(e, 3)) for g, c, w, e in terms)
    return _noise_shape(n, sr, key)


@lru_cache(maxsize=512)
def _noise_shape(n: int, sr: int, terms: tuple[tuple[float, float, float, float], ...]) -> np.ndarray:
    f = rfft_freqs(n, sr)
    mag = np.zeros_like(f)
    for g, c, w, e in terms:
        part = band(f, c, w) if w > 0 else np.ones_like(f)
        if e:
            part = part * tilt(f, e)
        mag += np.float32(g) * part
    mag[0] = 0.0
    return frozen(mag)
