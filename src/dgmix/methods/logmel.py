"""``logmel``: no learning; each clip's log-mel frames pooled over time, same k-NN back end.

The simple-features floor every learned method has to beat. Its recommended scoring is max over
time (docs/results.md: on the real valve set the clicks' peak levels carry the anomaly, and
averaging over time washes them out); ``scoring.method_defaults: false`` or
``scoring.per_method.logmel`` change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from dgmix.config import RunConfig
from dgmix.methods.base import Method, TrainJob


class LogmelMethod(Method):
    name = "logmel"
    summary = "log-mel frames pooled per clip + k-NN (no training; the simple-features floor)"
    paper = False
    default_scoring: ClassVar[dict[str, Any]] = {"pooling": "max"}

    def train(self, job: TrainJob) -> Path | None:
        return None

    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        return None
