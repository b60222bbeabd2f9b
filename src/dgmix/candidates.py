"""The grid of clip-level scoring candidates (docs/results.md §6): pooling over time × back end ×
domain handling, named ``pooling/backend/domain``, as ScoringConfig fields.

Used by the label-free choice of ``scoring.select: pseudo`` (:mod:`dgmix.methods.selection`) and
by ``benchmarks/fewshot_table.py``. The list order is the tie-breaking order of that choice (max
pooling and 1-NN, the paper's back end, first).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["BACKENDS", "BACKEND_HELP", "CHOSEN_FIELDS", "DENSITIES", "DOMAINS", "POOLINGS", "SCORING_CANDIDATES",
           "candidate_fields", "parse_backend"]

#: the density back ends (:mod:`dgmix.scoring.gmm`); k-NN back ends are named ``<k>nn`` / ``<k>nn-std``
DENSITIES: tuple[str, ...] = ("gmm-diag", "gauss-lw")
BACKEND_HELP = "<k>nn, <k>nn-std (e.g. 1nn, 3nn-std), gmm-diag or gauss-lw"
_KNN = re.compile(r"^([1-9][0-9]*)nn(-std)?$")


def parse_backend(name: str) -> dict[str, Any]:
    """A back end's name read (:mod:`dgmix.scoring.backends`): ``{"kind": "knn", "k", "standardize"}``
    or ``{"kind": <density>}``; ValueError for a bad name."""
    m = _KNN.match(str(name))
    if m:
        return {"kind": "knn", "k": int(m.group(1)), "standardize": m.group(2) is not None}
    if name in DENSITIES:
        return {"kind": name}
    raise ValueError(f"unknown back end {name!r}; choose {BACKEND_HELP}")


#: The ScoringConfig fields a candidate sets (and ``scoring.select: pseudo`` chooses).
CHOSEN_FIELDS: tuple[str, ...] = ("pooling", "gwrp_r", "backend", "per_domain")

#: pooling name -> ScoringConfig fields (r = 0 is max, r = 1 is mean)
POOLINGS: dict[str, dict[str, Any]] = {
    "max": {"pooling": "max"},
    "gwrp0.5": {"pooling": "gwrp", "gwrp_r": 0.5},
    "gwrp0.75": {"pooling": "gwrp", "gwrp_r": 0.75},
    "gwrp0.9": {"pooling": "gwrp", "gwrp_r": 0.9},
    "gwrp0.95": {"pooling": "gwrp", "gwrp_r": 0.95},
    "gwrp0.99": {"pooling": "gwrp", "gwrp_r": 0.99},
    "mean": {"pooling": "mean"},
}
#: back ends of the grid (:mod:`dgmix.scoring.backends`)
BACKENDS: tuple[str, ...] = ("1nn", "1nn-std", "3nn-std", "gmm-diag", "gauss-lw")
#: "none": one bank / model per section; "domain": one per section and domain
DOMAINS: tuple[str, ...] = ("none", "domain")

#: every ``pooling/backend/domain`` name, in tie-breaking order
SCORING_CANDIDATES: tuple[str, ...] = tuple(f"{p}/{b}/{d}" for p in POOLINGS for b in BACKENDS for d in DOMAINS)


def candidate_fields(name: str) -> dict[str, Any]:
    """ScoringConfig fields of a candidate named ``pooling/backend/domain``."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] not in POOLINGS or parts[1] not in BACKENDS or parts[2] not in DOMAINS:
        raise ValueError(f"unknown scoring candidate {name!r}: expected pooling/backend/domain with pooling in "
                         f"{list(POOLINGS)}, backend in {list(BACKENDS)}, domain in {list(DOMAINS)}")
    return {"gwrp_r": 0.9, **POOLINGS[parts[0]], "backend": parts[1], "per_domain": parts[2] == "domain"}
