"""The grid of clip-level scoring candidates (docs/results.md §6; issue 14): pooling over time ×
back end × domain handling, named ``pooling/backend/domain``, as ScoringConfig fields.

Used by the label-free choice of ``scoring.select: pseudo`` (:mod:`dgmix.methods.selection`) and
by ``benchmarks/fewshot_table.py``. The list order is the tie-breaking order of that choice (max
pooling and 1-NN, the paper's back end, first).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BACKENDS", "CHOSEN_FIELDS", "DOMAINS", "POOLINGS", "SCORING_CANDIDATES", "candidate_fields",
           "default_candidates"]

#: The ScoringConfig fields a candidate sets (and ``scoring.select: pseudo`` chooses).
CHOSEN_FIELDS: tuple[str, ...] = ("pooling", "gwrp_r", "backend", "k", "standardize", "domain_aware",
                                  "gmm_covariance", "gmm_domain")

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
#: back-end name -> ScoringConfig fields
BACKENDS: dict[str, dict[str, Any]] = {
    "1nn": {"backend": "knn", "k": 1, "standardize": False},
    "1nn-std": {"backend": "knn", "k": 1, "standardize": True},
    "3nn-std": {"backend": "knn", "k": 3, "standardize": True},
    "gmm-diag": {"backend": "gmm", "gmm_covariance": "diag"},
    "gmm-full": {"backend": "gmm", "gmm_covariance": "full"},
}
#: "none": one bank / mixture per section; "domain": k-NN ``domain_aware``, GMM ``gmm_domain: tied``
DOMAINS: tuple[str, ...] = ("none", "domain")


#: every ``pooling/backend/domain`` name, in tie-breaking order
SCORING_CANDIDATES: tuple[str, ...] = tuple(f"{p}/{b}/{d}" for p in POOLINGS for b in BACKENDS for d in DOMAINS)


def default_candidates() -> list[str]:
    """The whole grid, in tie-breaking order."""
    return list(SCORING_CANDIDATES)


def candidate_fields(name: str) -> dict[str, Any]:
    """ScoringConfig fields of a candidate named ``pooling/backend/domain``."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] not in POOLINGS or parts[1] not in BACKENDS or parts[2] not in DOMAINS:
        raise ValueError(f"unknown scoring candidate {name!r}: expected pooling/backend/domain with pooling in "
                         f"{list(POOLINGS)}, backend in {list(BACKENDS)}, domain in {list(DOMAINS)}")
    f = {**POOLINGS[parts[0]], **BACKENDS[parts[1]]}
    gmm = f["backend"] == "gmm"
    f["domain_aware"] = parts[2] == "domain" and not gmm
    f["gmm_domain"] = "tied" if parts[2] == "domain" and gmm else "none"
    return f
