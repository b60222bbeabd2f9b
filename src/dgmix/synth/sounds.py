"""Vectorised building blocks for the synthetic machine sounds (see docs/synthetic-data.md).

Everything in these modules works on whole clips with numpy (no Python loop over samples) and
in float32 where precision allows, because the generator must write well over 50 ten-second
clips per second on two CPU cores. The main tricks:

* **Wavetables.** A periodic component (a set of harmonics, or a periodic train of decaying
  bursts) is one period stored in a table of :data:`TABLE_SIZE` samples, read at a running phase
  (in cycles). Many harmonics then cost one table look-up instead of one ``sin`` each, and the
  phase can follow a slowly varying speed.
* **Spectral shaping.** Stationary noise (aerodynamic, flow, background) is drawn directly as a
  random spectrum with the wanted magnitude and turned into time by one inverse real FFT.
* **One final FFT pass** (:func:`record`) applies the microphone's frequency response to the
  machine sound and adds the factory background at the requested SNR in the frequency domain.

None of this follows the DG-Mix paper; the paper uses the real DCASE 2022 data.

Layout: this module re-exports the blocks of :mod:`dgmix.synth.wavetables` (phase accumulators,
wavetables), :mod:`dgmix.synth.spectral` (shaped noise), :mod:`dgmix.synth.events` (impact
kernels, gates) and :mod:`dgmix.synth.recording` (microphone, background, :func:`record`,
:func:`to_pcm16`).
"""

from __future__ import annotations

from dgmix.synth.events import add_events, damped_kernel, gate
from dgmix.synth.recording import Background, Mic, mic_response, record, to_pcm16
from dgmix.synth.spectral import band, noise_shape, rfft_freqs, shaped_noise, tilt
from dgmix.synth.wavetables import (
    ONE_CYCLE,
    PHASE_BITS,
    TABLE_BITS,
    TABLE_SIZE,
    burst_table,
    harmonic_table,
    read_table,
    rotation,
    rotation_from_freq,
    scale_phase,
    sine,
)

__all__ = [
    "ONE_CYCLE",
    "PHASE_BITS",
    "TABLE_BITS",
    "TABLE_SIZE",
    "Background",
    "Mic",
    "add_events",
    "band",
    "burst_table",
    "damped_kernel",
    "gate",
    "harmonic_table",
    "mic_response",
    "noise_shape",
    "read_table",
    "record",
    "rfft_freqs",
    "rotation",
    "rotation_from_freq",
    "scale_phase",
    "shaped_noise",
    "sine",
    "tilt",
    "to_pcm16",
]
