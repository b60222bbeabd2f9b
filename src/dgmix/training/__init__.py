"""Training stages: DG-Mix / VICReg pre-training, fine-tuning, the official baseline.

Each stage is a *task* (model + loss + one step) run by the shared epoch loop in
:mod:`dgmix.training.loop`, which handles sharding, checkpoints, resume and logging.
"""

from dgmix.training.finetune import finetune, train_baseline
from dgmix.training.pretrain import pretrain

__all__ = ["finetune", "pretrain", "train_baseline"]
