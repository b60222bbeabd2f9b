"""Which test groups of a data set's sections are empty, before anything is scored.

``dgmix data`` and ``dgmix run`` print one warning line per section whose labelled test clips lack
a group (no anomalous, no source-domain normal or no target-domain normal clip): the metrics that
need that group will be n/a (:mod:`dgmix.metrics.dcase`). A clip with no domain (MIMII 2019, plain
layouts) counts as source domain, as in training (:attr:`dgmix.data.ClipRecord.bank_domain`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dgmix.data.records import ClipRecord
from dgmix.metrics.dcase import empty_groups, missing_note

__all__ = ["incomplete_group_warnings", "labels_of"]


def labels_of(records: Sequence[ClipRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(1 = anomaly, 1 = target domain) arrays of labelled test records."""
    return (np.array([r.label == "anomaly" for r in records], dtype=int),
            np.array([r.bank_domain == "target" for r in records], dtype=int))


def incomplete_group_warnings(records: Sequence[ClipRecord]) -> list[str]:
    """One line per (machine type, section) of the test ``records`` that lacks a group, in sorted
    order. Sections with an unlabelled clip (evaluation names without ground truth) are skipped."""
    by_section: dict[tuple[str, str], list[ClipRecord]] = {}
    for r in records:
        if r.split == "test":
            by_section.setdefault((r.machine, r.section), []).append(r)
    notes = (missing_note(machine, section, empty_groups(*labels_of(recs)),
                          unknown_domain=any(r.domain == "unknown" for r in recs))
             for (machine, section), recs in sorted(by_section.items()) if all(r.label != "unknown" for r in recs))
    return [note for note in notes if note is not None]
