"""One sound model per DCASE 2022 machine type, with sections, domains and anomaly kinds.

Each model (a :class:`MachineModel` subclass) knows

* its **sections**: per section, the attribute keys written into the file names and the attribute
  values of the source and of the target domain (:class:`SectionSpec`); the target domain shifts
  one operating or recording condition (speed, load, valve pattern, background noise type or
  level, microphone position);
* how to turn attribute values into physical parameters (speed, load, microphone response,
  factory background, see :mod:`dgmix.synth.recording`);
* its **anomaly kinds** (at least two per machine type) and how each one alters the sound.

Normal clips within one domain still vary: random start phases, a small speed offset and drift,
harmonic amplitude jitter, level and SNR jitter, and a fresh noise realisation. The target domain
has the same kinds of jitter (scaled by :data:`TARGET_SPREAD`, 1 by default) but only a few
training clips, as in DCASE 2022 Task 2: with 3 clips the nuisance variation of the
shifted condition is not covered, which is what makes the target domain hard for a
nearest-neighbour detector.

The models are illustrative, not physical simulations; docs/synthetic-data.md describes them.
Sections 03-05 reuse the shift of section ``XX mod 3`` with another machine unit (different
blade count, gear teeth, resonance, ...), like the DCASE additional-training sections.

Layout: this module holds the registry (:data:`MACHINES`, :data:`SECTIONS`, :data:`MODELS`,
:func:`model`); the base class, section specs and background/microphone presets are in
:mod:`dgmix.synth.machine_model`, the models in :mod:`dgmix.synth.rotating` (fan, gearbox,
bearing), :mod:`dgmix.synth.cyclic` (valve, slider) and :mod:`dgmix.synth.toys` (ToyCar, ToyTrain).
"""

from __future__ import annotations

from dgmix.synth.cyclic import Slider, Valve
from dgmix.synth.machine_model import MachineModel
from dgmix.synth.rotating import Bearing, Fan, Gearbox
from dgmix.synth.toys import ToyCar, ToyTrain

__all__ = ["MACHINES", "MODELS", "SECTIONS", "model"]

#: Machine types in DCASE 2022 order; the index of a name here enters the per-clip seeds.
MACHINES: tuple[str, ...] = ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")
#: Sections a model can render (00-02 development, 03-05 additional training units).
SECTIONS: tuple[str, ...] = ("00", "01", "02", "03", "04", "05")


#: Model instance per machine type.
MODELS: dict[str, MachineModel] = {
    m.name: m for m in (ToyCar(), ToyTrain(), Bearing(), Fan(), Gearbox(), Slider(), Valve())}


def model(machine: str) -> MachineModel:
    """The :class:`MachineModel` of a machine type (exact DCASE spelling)."""
    if machine not in MODELS:
        raise ValueError(f"unknown machine type {machine!r}; known: {', '.join(MACHINES)}")
    return MODELS[machine]
