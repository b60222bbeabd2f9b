"""Learning-rate schedule of DG-Mix pre-training (paper §3.3): linear warm-up from 0
over 10 epochs, then cosine decay to 0.002 at epoch 100; and the linear scaling rule.

Interpretation: the paper says the cosine decay ends "at 0.002"; we read this as an absolute
learning rate (``final_lr=0.002``). VICReg's code instead ends at ``base_lr * 0.001``
(0.0008 for base 0.8); ``relative_final=True`` treats ``final_lr`` as that multiple of base_lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WarmupCosine", "scaled_lr"]


def scaled_lr(batch_size: int, base: float = 0.2) -> float:
    """Linear scaling rule: base * batch / 256 (0.8 for batch 1024, paper §3.3)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return base * batch_size / 256


@dataclass(frozen=True)
class WarmupCosine:
    """Warm-up + cosine schedule, as a pure function of the optimisation step.

    lr(step) = base_lr * step / warmup_steps                        for step < warmup_steps,
    lr(step) = final + (base_lr - final) * (1 + cos(pi * k / K)) / 2   afterwards,
    with k = step - warmup_steps, K = total_steps - warmup_steps, and lr = final after the end.
    Steps are counted in optimizer updates: ``warmup_steps = warmup_epochs * steps_per_epoch``.
    """

    base_lr: float
    warmup_epochs: float = 10
    total_epochs: float = 100
    final_lr: float = 0.002
    steps_per_epoch: int = 1
    relative_final: bool = False

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or not 0 <= self.warmup_epochs <= self.total_epochs or self.total_epochs <= 0:
            raise ValueError(f"need steps_per_epoch >= 1 and 0 <= warmup_epochs <= total_epochs > 0, got "
                             f"{self.steps_per_epoch}, {self.warmup_epochs}, {self.total_epochs}")
        if self.base_lr < 0 or self.final_lr < 0:
            raise ValueError("learning rates must be >= 0")

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_epochs * self.steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return round(self.total_epochs * self.steps_per_epoch)

    @property
    def end_lr(self) -> float:
        return self.base_lr * self.final_lr if self.relative_final else self.final_lr

    def lr_at(self, step: float) -> float:
        """Learning rate at optimisation step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.base_lr * max(step, 0) / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if step >= self.total_steps or decay_steps <= 0:
            return self.end_lr
        q = 0.5 * (1.0 + math.cos(math.pi * (step - self.warmup_steps) / decay_steps))
        return self.end_lr + (self.base_lr - self.end_lr) * q
