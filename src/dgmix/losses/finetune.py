"""Fine-tuning loss (paper §3.4): KL(mixed one-hot section label || softmax(logits)) plus gamma
times the DG-Mix consistency term (eq. 1, mean over batch and dimensions) on the encoder outputs
Y, Y', Y_lam."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dgmix.losses.terms import consistency_term

__all__ = ["MixupKLLoss", "kl_to_target", "mixup_kl_loss"]


def kl_to_target(logits: Tensor, target: Tensor) -> Tensor:
    """KL(target || softmax(logits)), summed over classes and averaged over the batch
    ("batchmean"). Target probabilities may contain zeros (0 * log 0 = 0)."""
    if logits.ndim != 2 or target.shape != logits.shape:
        raise ValueError(f"logits and target must both be (N, n_classes), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    log_p = F.log_softmax(logits.float(), dim=1)
    return F.kl_div(log_p, target.to(log_p.dtype), reduction="batchmean")


def mixup_kl_loss(
    logits_mix: Tensor, target_mix: Tensor, y: Tensor, y_prime: Tensor, y_mix: Tensor, lam: Tensor | float,
    gamma: float = 25.0,
) -> dict[str, Tensor]:
    """KL(target_mix || softmax(logits_mix)) + gamma * s(Y_lam, Y, Y', lam).

    Args:
        logits_mix: classifier logits of the mixed windows, (N, n_classes).
        target_mix: mixed one-hot section labels lam * onehot(a) + (1 - lam) * onehot(b)
            (see :func:`dgmix.augment.mix_labels`), (N, n_classes).
        y, y_prime, y_mix: encoder outputs of X, X', X_lam, (N, 320).
        lam: the mixing coefficients used for both the inputs and the labels.
        gamma: weight of the consistency term. The paper gives no value for fine-tuning; 25
            (the pre-training value) is our default -- an interpretation.
    """
    kl = kl_to_target(logits_mix, target_mix)
    s = consistency_term(y, y_prime, y_mix, lam)
    return {"loss": kl + gamma * s, "kl": kl, "consistency": s}


class MixupKLLoss(nn.Module):
    """Module form of :func:`mixup_kl_loss` (paper §3.4)."""

    def __init__(self, gamma: float = 25.0) -> None:
        super().__init__()
        self.gamma = float(gamma)

    def forward(self, logits_mix: Tensor, target_mix: Tensor, y: Tensor, y_prime: Tensor, y_mix: Tensor,
                lam: Tensor | float) -> dict[str, Tensor]:
        return mixup_kl_loss(logits_mix, target_mix, y, y_prime, y_mix, lam, self.gamma)
