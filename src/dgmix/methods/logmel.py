"""``logmel``: no learning; each clip's log-mel frames pooled over time, then a k-NN or GMM back end.

The simple-features floor every learned method has to beat, and the recommended detector for few
clips and no GPU (issue 14). Its recommended scoring is chosen per machine type on the training
clips alone (``select: pseudo``, :mod:`dgmix.methods.selection`): pooling over time (max, GWRP,
mean) x back end (1-NN, standardised 1/3-NN, GMM) x domain handling, by cross-validated AUC against
generic pseudo-anomalies. docs/results.md §6.3 has what it chose and scored on the synthetic
benchmark and the real valve set. ``pooling: max`` is what remains with ``select: none``.
``scoring.method_defaults: false`` (``dgmix run --pooling``) or ``scoring.per_method.logmel``
change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from dgmix.config import RunConfig
from dgmix.methods.base import Method, TrainJob


class LogmelMethod(Method):
    name = "logmel"
    summary = ("log-mel frames pooled per clip + k-NN or GMM, chosen on the training clips "
               "(no training; the simple-features floor)")
    paper = False
    default_scoring: ClassVar[dict[str, Any]] = {"pooling": "max", "select": "pseudo"}

    def train(self, job: TrainJob) -> Path | None:
        return None

    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        return None
