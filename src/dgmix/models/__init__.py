"""Networks: the Table 1 MobileNetV2 encoder (paper §3.2), its heads (paper §3.3-3.4) and the
official DCASE 2022 baseline's MobileNetV2 (the paper's Table 2, left)."""

from dgmix.models.baseline_net import BaselineNet
from dgmix.models.factory import (
    build_baseline_classifier,
    build_baseline_encoder,
    build_classifier,
    build_encoder,
    build_expander,
)
from dgmix.models.heads import Expander, SectionClassifier
from dgmix.models.mobilenet import (
    BOTTLENECK_SETTINGS,
    ROW_NAMES,
    ConvBNReLU6,
    Encoder,
    InvertedResidual,
    count_parameters,
    make_divisible,
    multiply_adds,
)

__all__ = [
    "BOTTLENECK_SETTINGS",
    "BaselineNet",
    "ROW_NAMES",
    "ConvBNReLU6",
    "Encoder",
    "Expander",
    "InvertedResidual",
    "SectionClassifier",
    "build_baseline_classifier",
    "build_baseline_encoder",
    "build_classifier",
    "build_encoder",
    "build_expander",
    "count_parameters",
    "make_divisible",
    "multiply_adds",
]
