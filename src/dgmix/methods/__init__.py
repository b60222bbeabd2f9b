"""Detector recipes behind one interface (:class:`Method`): the paper's ``baseline``, ``scratch``,
``vicreg`` and ``dgmix`` (Tables 2-3), the ``logmel`` floor and the ``random`` control.

Adding a method: write a module with a :class:`Method` subclass (``name``, ``summary``,
``train``, ``encoder``; override ``build_detector`` or ``default_scoring`` if it needs to), then
register an instance below. The pipeline, ``dgmix run --methods`` and the result tables pick it
up from the registry (docs/architecture.md).
"""

from dgmix.methods.base import Method, TrainJob
from dgmix.methods.baseline import BaselineMethod
from dgmix.methods.detector import fit_detector
from dgmix.methods.finetuned import DGMIX, SCRATCH, VICREG, FinetunedMethod
from dgmix.methods.logmel import LogmelMethod
from dgmix.methods.machine import MachineData, load_machine
from dgmix.methods.random_encoder import RandomEncoderMethod
from dgmix.methods.registry import check_per_method, get_method, method_names, register, resolve_scoring

# Registration order is the order of result tables and of `dgmix run`'s default methods.
register(BaselineMethod())
register(SCRATCH)
register(VICREG)
register(DGMIX)
register(LogmelMethod())
register(RandomEncoderMethod())

__all__ = ["FinetunedMethod", "MachineData", "Method", "TrainJob", "check_per_method", "fit_detector", "get_method",
           "load_machine", "method_names", "register", "resolve_scoring"]
