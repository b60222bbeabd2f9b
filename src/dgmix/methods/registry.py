"""Methods by name, in registration order, and the scoring each one runs with."""

from __future__ import annotations

import dataclasses

from dgmix.candidates import CHOSEN_FIELDS
from dgmix.config import ScoringConfig, scoring_with
from dgmix.errors import InputError
from dgmix.methods.base import Method

_REGISTRY: dict[str, Method] = {}



def register(method: Method) -> Method:
    """Make ``method`` available under ``method.name`` (``dgmix run --methods``)."""
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def method_names(paper_only: bool = False) -> list[str]:
    """Registered names, in registration order (``paper_only``: the paper's Tables 2-3 rows)."""
    return [n for n, m in _REGISTRY.items() if m.paper or not paper_only]


def get_method(name: str, source: str = "--methods") -> Method:
    """The registered method ``name``; an unknown name is an InputError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(source, f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}") from None


def resolve_scoring(base: ScoringConfig, method: Method) -> ScoringConfig:
    """The scoring ``method`` runs with: ``base``, then the method's own recommendation, then
    ``base.per_method[method.name]``.

    A ``per_method`` entry that names one of the fields ``scoring.select: pseudo`` would choose
    (:data:`CHOSEN_FIELDS`) and does not name ``select`` itself turns the choice off for that
    method: what a user writes for a method is used as written."""
    s = dataclasses.replace(base, per_method={})
    if method.default_scoring:
        s = scoring_with(s, dict(method.default_scoring), f"method {method.name}")
    if method.name in base.per_method:
        over = dict(base.per_method[method.name])
        if "select" not in over and any(f in over for f in CHOSEN_FIELDS):
            over["select"] = "none"  # fields named for this method are used as given, not re-chosen
        s = scoring_with(s, over, "config", prefix=f"scoring.per_method.{method.name}.")
    return s


def check_per_method(base: ScoringConfig, source: str = "config") -> None:
    """Every key of ``scoring.per_method`` must name a registered method."""
    unknown = sorted(set(base.per_method) - set(_REGISTRY))
    if unknown:
        raise InputError(source, f"scoring.per_method names unknown method(s) {unknown}; "
                                 f"known: {', '.join(_REGISTRY)}")
