"""Anomaly scoring from embeddings (paper §3.5, SPEC §6): pure torch/numpy, no training code.

Public names:

* :func:`pool` (windows (W, D), method="mean"|"max"|"gwrp"|"mean+max", gwrp_r=0.9) -> (D,) and
  :func:`pool_batch` (list / (C, W, D) / flat + lengths) -> (C, D'); the paper uses ``"mean"``.
* :func:`knn_distance` (queries (M, D), bank (N, D), k=1, chunk=4096, leave_one_out=False) -> (M,).
* :class:`KNNScorer` (nn.Module; bank as buffers): ``fit(embeddings, sections, domains)``,
  ``score(embeddings, sections)`` (per-section 1-NN, both domains in the bank, by default),
  ``loo_scores(...)`` (training scores for the threshold); options ``k``, ``domain_aware``,
  ``window_level`` + ``aggregation``, ``bank_reduce`` + ``bank_size``.
* :func:`greedy_coreset`, :func:`random_subset` (bank reduction).
* :func:`fit_gamma_threshold` (scores, percentile=0.9) -> float and :func:`decide`.
* CSV I/O in the official formats: :func:`write_scores`, :func:`write_decisions`,
  :func:`read_scores`, :func:`read_decisions`, :func:`read_ground_truth`,
  :func:`labels_from_names`, :func:`find_score_files`.
"""

from dgmix.scoring.csvio import (
    GroundTruth,
    decision_file_name,
    find_score_files,
    ground_truth_paths,
    labels_from_names,
    read_decisions,
    read_ground_truth,
    read_scores,
    score_file_name,
    section_id,
    write_decisions,
    write_scores,
)
from dgmix.scoring.knn import KNNScorer, greedy_coreset, knn_distance, random_subset
from dgmix.scoring.pooling import POOL_METHODS, gwrp_weights, pool, pool_batch, pooled_dim
from dgmix.scoring.threshold import (
    ThresholdFit,
    decide,
    fit_gamma_threshold,
    fit_gamma_threshold_info,
)

__all__ = [
    "POOL_METHODS",
    "GroundTruth",
    "KNNScorer",
    "ThresholdFit",
    "decide",
    "decision_file_name",
    "find_score_files",
    "fit_gamma_threshold",
    "fit_gamma_threshold_info",
    "greedy_coreset",
    "ground_truth_paths",
    "gwrp_weights",
    "knn_distance",
    "labels_from_names",
    "pool",
    "pool_batch",
    "pooled_dim",
    "random_subset",
    "read_decisions",
    "read_ground_truth",
    "read_scores",
    "score_file_name",
    "section_id",
    "write_decisions",
    "write_scores",
]
