"""Losses of DG-Mix pre-training (paper §3.3, eqs. 1-5), the VICReg ablation and fine-tuning
(paper §3.4). Composite losses return a dict of tensors with the total under ``loss``."""

from dgmix.losses.dgmix import DGMixLoss, dgmix_loss
from dgmix.losses.finetune import MixupKLLoss, kl_to_target, mixup_kl_loss
from dgmix.losses.terms import VARIANCE_EPS, consistency_term, covariance_term, invariance_term, variance_term
from dgmix.losses.vicreg import VICRegLoss, vicreg_loss

__all__ = [
    "VARIANCE_EPS", "DGMixLoss", "MixupKLLoss", "VICRegLoss", "consistency_term", "covariance_term", "dgmix_loss",
    "invariance_term", "kl_to_target", "mixup_kl_loss", "variance_term", "vicreg_loss",
]
