"""Synthetic domain-shift data set in the DCASE 2022 Task 2 layout (docs/synthetic-data.md).

Seven machine-type sound models (:mod:`dgmix.synth.machines`) built from vectorised blocks;
:func:`generate` writes clips, attributes and ground truth (:mod:`dgmix.synth.generate`).

Everything in these modules works on whole clips with numpy (no Python loop over samples) and
in float32 where precision allows, because the generator must write well over 50 ten-second
clips per second on two CPU cores. The main tricks:

* **Wavetables.** A periodic component (a set of harmonics, or a periodic train of decaying
  bursts) is one period stored in a table of :data:`~dgmix.synth.wavetables.TABLE_SIZE` samples, read at a running phase
  (in cycles). Many harmonics then cost one table look-up instead of one ``sin`` each, and the
  phase can follow a slowly varying speed.
* **Spectral shaping.** Stationary noise (aerodynamic, flow, background) is drawn directly as a
  random spectrum with the wanted magnitude and turned into time by one inverse real FFT.
* **One final FFT pass** (:func:`~dgmix.synth.recording.record`) applies the microphone's frequency response to the
  machine sound and adds the factory background at the requested SNR in the frequency domain.

None of this follows the DG-Mix paper; the paper uses the real DCASE 2022 data.

The blocks: :mod:`dgmix.synth.wavetables` (phase accumulators, wavetables),
:mod:`dgmix.synth.spectral` (shaped noise), :mod:`dgmix.synth.events` (impact kernels, gates) and
:mod:`dgmix.synth.recording` (microphone, background, :func:`~dgmix.synth.recording.record`,
:func:`~dgmix.synth.recording.to_pcm16`).
"""

from dgmix.synth.generate import SynthConfig, clip_seed, generate, plan, render_clip
from dgmix.synth.machine_model import MachineModel, SectionSpec
from dgmix.synth.machines import MACHINES, MODELS, SECTIONS, model

__all__ = ["MACHINES", "MODELS", "SECTIONS", "MachineModel", "SectionSpec", "SynthConfig", "clip_seed", "generate",
           "model", "plan", "render_clip"]
