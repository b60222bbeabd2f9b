"""Anomaly scoring (paper §3.5): the detector module, its back ends, thresholds and the official CSVs.

* :class:`~dgmix.scoring.detector.Detector`: log-mel frames + section -> score, one ``nn.Module``
  that ``dgmix run``, ``dgmix score``, ``dgmix serve`` and ``dgmix export`` all use;
* back ends (:mod:`dgmix.scoring.backends`): k-NN banks (:mod:`dgmix.scoring.knn`) and Gaussian
  densities (:mod:`dgmix.scoring.gmm`) on pooled clip vectors (:mod:`dgmix.scoring.pooling`);
* the decision threshold (:mod:`dgmix.scoring.threshold`) and the detector's health check
  (:mod:`dgmix.scoring.health`);
* CSV I/O in the official formats (:mod:`dgmix.scoring.csvio`).
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
from dgmix.scoring.pooling import POOL_METHODS, pool
from dgmix.scoring.threshold import ThresholdFit, decide, fit_gamma_threshold, fit_gamma_threshold_info

__all__ = [
    "POOL_METHODS",
    "GroundTruth",
    "ThresholdFit",
    "decide",
    "decision_file_name",
    "find_score_files",
    "fit_gamma_threshold",
    "fit_gamma_threshold_info",
    "ground_truth_paths",
    "labels_from_names",
    "pool",
    "read_decisions",
    "read_ground_truth",
    "read_scores",
    "score_file_name",
    "section_id",
    "write_decisions",
    "write_scores",
]
