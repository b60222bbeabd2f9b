"""Generic pseudo-anomalies made from normal training clips (not in the DG-Mix paper).

A detector for a new machine type has to be configured (pooling over time, back end, domain
handling) without anomalous clips and without the test labels. :mod:`dgmix.methods.selection`
does it by cross-validation on the training clips, with pseudo-anomalies made here as the
positives. They are deliberately *generic*: no knowledge of any test set goes into them. Each is
a gain change of ``±g`` dB (``g`` drawn from ``gain_db``; half of them add energy, half remove it)
on one time-frequency region of a held-out normal clip's log-mel matrix ``(n_mels, T)`` (dB):

* ``"band"``: a random band of mel bins, all frames -- a stationary change of the spectrum
  (a resonance that moved, a louder or quieter component);
* ``"events"``: the same kind of band, only on the frames where the clip is loudest in that band
  (the top ``event_fraction`` of its frames) -- the machine's own events got louder or weaker;
* ``"span"``: the band over one random contiguous stretch of frames -- something new happened, or
  the sound dropped out, for a moment.

Band widths are a fraction ``band_fraction`` of the mel bins, stretches and event sets a fraction
of the frames. The three scopes weigh equally in the selection score, so a configuration is chosen
for being sensitive to all three kinds of change, not to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SCOPES", "PseudoAnomalies", "PseudoAnomaly", "draw_pseudo_anomalies", "make_pseudo_anomalies", "perturb"]

SCOPES: tuple[str, ...] = ("band", "events", "span")


@dataclass(frozen=True)
class PseudoAnomaly:
    """One gain change: ``gain_db`` on mel bins ``[lo, hi)`` at the frames ``frames`` (None: all)."""

    scope: str
    lo: int
    hi: int
    gain_db: float
    frames: tuple[int, ...] | None


#: Gain range (dB) and fractions of mel bins / frames the generator draws from (module docstring).
GAIN_DB, BAND_FRACTION, EVENT_FRACTION, SPAN_FRACTION = (3.0, 9.0), (1 / 16, 1 / 2), (0.02, 0.2), (0.02, 0.2)


class PseudoAnomalies:
    """The generator (its ranges are the module's constants: the label-free choice uses no other)."""

    gain_db, band_fraction, event_fraction, span_fraction = GAIN_DB, BAND_FRACTION, EVENT_FRACTION, SPAN_FRACTION

    def draw(self, logmel: np.ndarray, scope: str, sign: int, rng: np.random.Generator) -> PseudoAnomaly:
        """A random pseudo-anomaly of ``scope`` for one clip ``(n_mels, T)``; ``sign`` +1 adds
        energy, -1 removes it."""
        if scope not in SCOPES:
            raise ValueError(f"unknown pseudo-anomaly scope {scope!r}; choose one of {SCOPES}")
        n_mels, n_frames = logmel.shape
        width = _count(rng, self.band_fraction, n_mels)
        lo = int(rng.integers(0, n_mels - width + 1))
        gain = sign * float(rng.uniform(*self.gain_db))
        frames: tuple[int, ...] | None = None
        if scope == "events":
            n = _count(rng, self.event_fraction, n_frames)
            level = logmel[lo:lo + width].mean(axis=0)
            frames = tuple(sorted(int(i) for i in np.argsort(-level, kind="stable")[:n]))
        elif scope == "span":
            n = _count(rng, self.span_fraction, n_frames)
            start = int(rng.integers(0, n_frames - n + 1))
            frames = tuple(range(start, start + n))
        return PseudoAnomaly(scope, lo, lo + width, gain, frames)


def _count(rng: np.random.Generator, fraction: tuple[float, float], n: int) -> int:
    """A count between ``fraction`` of ``n`` (at least 1, at most ``n``)."""
    return int(np.clip(round(rng.uniform(*fraction) * n), 1, n))


def perturb(logmel: np.ndarray, p: PseudoAnomaly) -> np.ndarray:
    """A copy of ``logmel`` (dB, ``(n_mels, T)``) with the gain change ``p`` applied."""
    out = np.array(logmel, dtype=np.float32, copy=True)
    if p.frames is None:
        out[p.lo:p.hi] += p.gain_db
    else:
        out[p.lo:p.hi, list(p.frames)] += p.gain_db
    return out


def draw_pseudo_anomalies(logmel: np.ndarray, rng: np.random.Generator) -> list[PseudoAnomaly]:
    """Six pseudo-anomalies of one normal clip ``(n_mels, T)``: each scope once with added and once
    with removed energy, each with its own random band, gain and frames."""
    if logmel.ndim != 2 or min(logmel.shape) < 1:
        raise ValueError(f"a clip's log-mel must be (n_mels, T) with both > 0, got {logmel.shape}")
    settings = PseudoAnomalies()
    return [settings.draw(logmel, scope, sign, rng) for scope in SCOPES for sign in (1, -1)]


def make_pseudo_anomalies(logmel: np.ndarray, rng: np.random.Generator) -> list[tuple[PseudoAnomaly, np.ndarray]]:
    """The six pseudo-anomalies of :func:`draw_pseudo_anomalies`, each with its perturbed copy."""
    return [(p, perturb(logmel, p)) for p in draw_pseudo_anomalies(logmel, rng)]
