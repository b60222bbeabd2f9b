"""Optimisation for DG-Mix pre-training (paper §3.3): LARS and the warm-up + cosine schedule."""

from dgmix.optim.lars import LARS, exclude_bias_and_norm, param_groups
from dgmix.optim.schedule import WarmupCosine, scaled_lr

__all__ = [
    "LARS",
    "WarmupCosine",
    "exclude_bias_and_norm",
    "param_groups",
    "scaled_lr",
]
