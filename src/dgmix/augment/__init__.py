"""Augmentations: mixup and pair sampling for DG-Mix (paper §3.3-3.4) and SpecAugment for the
VICReg ablation (paper §4)."""

from dgmix.augment.mixup import (
    FinetunePairSampler,
    PairSampler,
    mix,
    mix_labels,
    sample_lambda,
)
from dgmix.augment.specaugment import SpecAugment, time_warp

__all__ = [
    "FinetunePairSampler",
    "PairSampler",
    "SpecAugment",
    "mix",
    "mix_labels",
    "sample_lambda",
    "time_warp",
]
