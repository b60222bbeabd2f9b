"""Augmentations: mixup and pair sampling for DG-Mix (paper §3.3-3.4) and SpecAugment for the
VICReg ablation (paper §4)."""

from dgmix.augment.mixup import mix, mix_labels, sample_lambda
from dgmix.augment.pairs import PairSampler, pair_shares
from dgmix.augment.specaugment import SpecAugment, time_warp

__all__ = [
    "PairSampler",
    "SpecAugment",
    "mix",
    "mix_labels",
    "pair_shares",
    "sample_lambda",
    "time_warp",
]
