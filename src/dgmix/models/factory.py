"""The one place that turns the config into networks (paper §3.2-3.4).

Every encoder in the package is built here, from the model settings *and* the feature settings:
the encoder's input is one context window, ``(n_mels, frames)`` (Table 1: 128 x 64), so a run
with other ``features.n_mels`` or ``features.frames`` gets an encoder whose last full
convolution covers the map that is actually left after the five stride-2 layers.
"""

from __future__ import annotations

from torch import nn

from dgmix.config import ModelConfig
from dgmix.features import FeatureParams
from dgmix.models.baseline_net import BaselineNet, baseline_classifier
from dgmix.models.heads import Expander, SectionClassifier
from dgmix.models.mobilenet import Encoder


def build_encoder(model: ModelConfig, features: FeatureParams) -> Encoder:
    """The Table 1 encoder for windows of ``features.input_size``."""
    return Encoder(width_mult=model.width_mult, embed_dim=model.embed_dim, input_size=features.input_size)


def build_expander(model: ModelConfig) -> Expander:
    """The pre-training expander h (paper §3.3)."""
    return Expander(in_dim=model.embed_dim, hidden=model.expander_hidden, n_layers=model.expander_layers)


def build_classifier(model: ModelConfig, n_classes: int) -> SectionClassifier:
    """The fine-tuning / baseline classifier Linear(320,128)-ReLU-Linear(128, n_classes) (paper §3.4)."""
    return SectionClassifier(in_dim=model.embed_dim, hidden=model.classifier_hidden, n_classes=n_classes)


def build_baseline_encoder(model: ModelConfig, features: FeatureParams) -> BaselineNet:
    """The official DCASE 2022 baseline's MobileNetV2 (Keras, alpha ``model.width_mult``) up to its
    average pooling, for windows of ``features.input_size``."""
    return BaselineNet(width_mult=model.width_mult, input_size=features.input_size)


def build_baseline_classifier(model: ModelConfig, n_classes: int) -> nn.Linear:
    """The official baseline's ``Dense(n_sections)`` on its 1280-d pooled features."""
    return baseline_classifier(BaselineNet.embed_dim_for(model.width_mult), n_classes)
