"""``logmel``: no learning; each clip's log-mel frames pooled over time, then a k-NN or density back end.

The simple-features floor every learned method has to beat, and the recommended detector for few
clips and no GPU. Its scoring is chosen per machine type on the training clips alone
(``select: pseudo``, :mod:`dgmix.methods.selection`): pooling over time (max, GWRP, mean) x back
end (1-NN, standardised 1/3-NN, diagonal GMM, Ledoit-Wolf Gaussian) x domain handling, by
cross-validated AUC against generic pseudo-anomalies. docs/results.md §6.3 has what it chose and
scored on the synthetic benchmark and the real valve set. Any scoring field named under
``scoring.per_method.logmel`` is used as given instead (``pooling: max`` is what remains of the
recommendation then).
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
