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
           labels_from_names,
           read_decisions,
           read_ground_truth,
           read_scores,
           write_decisions,
           write_scores,
)
from dgmix.scoring.pooling import pool
from dgmix.scoring.threshold import decide, fit_gamma_threshold, fit_gamma_threshold_info

__all__ = ["decide", "fit_gamma_threshold", "fit_gamma_threshold_info", "labels_from_names", "pool", "read_decisions",
           "read_ground_truth", "read_scores", "write_decisions", "write_scores"]
