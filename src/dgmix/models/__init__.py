"""Networks: the Table 1 MobileNetV2 encoder (paper §3.2) and its heads (paper §3.3-3.4)."""

from dgmix.models.factory import build_classifier, build_encoder, build_expander
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
    "ROW_NAMES",
    "ConvBNReLU6",
    "Encoder",
    "Expander",
    "InvertedResidual",
    "SectionClassifier",
    "build_classifier",
    "build_encoder",
    "build_expander",
    "count_parameters",
    "make_divisible",
    "multiply_adds",
]
