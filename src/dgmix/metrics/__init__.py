"""Evaluation metrics of DCASE 2022 Task 2 and paper-style results tables.

Public names:

* :func:`section_metrics` (y_true, y_score, is_target, y_pred=None) -> :class:`SectionResult`
  with AUC-S (source normals + all anomalies), AUC-T (target normals + all anomalies), pAUC
  (``max_fpr=0.1`` over the whole section), AUC(all) and, given decisions, precision/recall/F1
  per domain; values are fractions; a value whose test group is empty is ``None`` ("n/a") and
  left out of the harmonic means (:func:`empty_groups`, :func:`missing_note`, :func:`official_values`).
* :func:`hmean` (values floored at ``sys.float_info.epsilon``), :func:`machine_summary`,
  :func:`overall_summary`, :func:`official_score` -> :class:`Summary` rows / float.
* :class:`ResultsTable` (results.md / results.csv / results.json) and :data:`PAPER_RESULTS`
  (the paper's Tables 2-3 as fractions); :func:`evaluate_scores_dir` evaluates a folder of
  official-format score files (``dgmix evaluate``).
"""

from dgmix.metrics.dcase import (
    EPS,
    GROUPS,
    MAX_FPR,
    OFFICIAL_KEYS,
    SectionResult,
    Summary,
    empty_groups,
    hmean,
    machine_summary,
    missing_note,
    official_score,
    official_values,
    overall_summary,
    section_metrics,
)
from dgmix.metrics.scores_dir import evaluate_scores_dir
from dgmix.metrics.tables import MACHINE_ORDER, PAPER_RESULTS, ResultsTable, paper_row

__all__ = ["EPS", "GROUPS", "MACHINE_ORDER", "MAX_FPR", "OFFICIAL_KEYS", "PAPER_RESULTS", "ResultsTable",
           "SectionResult", "Summary", "empty_groups", "evaluate_scores_dir", "hmean", "machine_summary",
           "missing_note", "official_score", "official_values", "overall_summary", "paper_row", "section_metrics"]
