"""Synthetic domain-shift data set in the DCASE 2022 Task 2 layout (docs/synthetic-data.md).

Seven machine-type sound models (:mod:`dgmix.synth.machines`) built from vectorised blocks
(:mod:`dgmix.synth.sounds`); :func:`generate` writes clips, attributes and ground truth.
"""

from dgmix.synth.generate import (
    ClipSpec,
    SynthConfig,
    SynthReport,
    clip_seed,
    generate,
    plan,
    render_clip,
    write_metadata,
)
from dgmix.synth.machines import MACHINES, MODELS, SECTIONS, MachineModel, SectionSpec, model

__all__ = [
    "MACHINES",
    "MODELS",
    "SECTIONS",
    "ClipSpec",
    "MachineModel",
    "SectionSpec",
    "SynthConfig",
    "SynthReport",
    "clip_seed",
    "generate",
    "model",
    "plan",
    "render_clip",
    "write_metadata",
]
