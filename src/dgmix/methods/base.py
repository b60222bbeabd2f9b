"""The method interface: what every detector recipe (paper Tables 2-3, plus the log-mel floor) provides.

A :class:`Method` answers three questions, and the pipeline asks nothing else:

* :meth:`Method.train`: train what it needs for one machine type (or nothing);
* :meth:`Method.build_detector`: turn that into a fitted :class:`~dgmix.scoring.detector.Detector`;
* :attr:`Method.default_scoring`: the scoring options it recommends on top of ``scoring``.

Methods are registered by name in :mod:`dgmix.methods.registry`; docs/architecture.md shows how
to add one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from dgmix.config import RunConfig, ScoringConfig
from dgmix.methods.machine import MachineData
from dgmix.scoring.detector import Detector
from dgmix.training.distributed import DistContext


@dataclass(frozen=True)
class TrainJob:
    """Everything a method needs to train on one machine type."""

    data_root: Path  # dataset root (the training stages read their clips from it)
    machine: MachineData  # the machine type's train/test clips and features
    cfg: RunConfig  # the run's configuration (never modified by a method)
    out_dir: Path  # RUN/<method>/<machine>: the method writes its training runs here
    cache_dir: Path  # feature cache
    progress: bool = True
    ctx: DistContext | None = None
    resume: bool = False  # continue an interrupted run: keep finished stages, resume the others

    def stage(self, stage_dir: Path, final_file: str) -> str | None:
        """How to run a training stage writing into ``stage_dir``: ``None`` when resuming and its
        last file ``final_file`` is there (finished: skip it), ``"resume"`` when resuming and it
        has a checkpoint, else ``"fresh"``."""
        from dgmix.training.loop import LAST

        if not self.resume:
            return "fresh"
        if (Path(stage_dir) / final_file).is_file():
            return None
        return "resume" if (Path(stage_dir) / LAST).is_file() else "fresh"


class Method(ABC):
    """One detector recipe. Subclasses set the class attributes and implement :meth:`train` and
    :meth:`encoder`; the default :meth:`build_detector` is the paper's k-NN back end (§3.5)."""

    #: Registered name (``dgmix run --methods``; result tables; ``scoring.per_method`` keys).
    name: ClassVar[str]
    #: One line for ``--help`` and docs.
    summary: ClassVar[str]
    #: A row of the paper's Tables 2-3 (run by default by ``run_pipeline``).
    paper: ClassVar[bool] = True
    #: Scoring options this method recommends, applied on top of ``scoring`` (see
    #: :func:`dgmix.methods.resolve_scoring`).
    default_scoring: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    def train(self, job: TrainJob) -> Path | None:
        """Train for ``job.machine``; return the folder that holds the result (None: nothing to train)."""

    @abstractmethod
    def encoder(self, model_dir: Path | None, cfg: RunConfig) -> nn.Module | None:
        """The window encoder of a trained model (eval mode), or None for log-mel frames."""

    def build_detector(self, model_dir: Path | None, md: MachineData, cfg: RunConfig,
                       scoring: ScoringConfig) -> Detector:
        """The fitted detector: the back end on :meth:`encoder`'s clip embeddings (paper §3.5)."""
        from dgmix.methods.detector import fit_detector

        return fit_detector(self.name, md, cfg, scoring, encoder=self.encoder(model_dir, cfg))
