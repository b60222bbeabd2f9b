"""The network of the official DCASE 2022 Task 2 MobileNetV2 baseline (the paper's Table 2, left).

The baseline (Dohi et al. 2022; its code, ``keras_model.get_model``) is Keras'
``MobileNetV2(input_shape=(frames, mels, 3), alpha=0.5, weights=None, classes=n_sections)`` on one
log-mel context window, the one-channel window copied three times (a ``Concatenate`` of the
input with itself). Re-implemented in torch from Keras' published architecture:

* input: the window ``(1, n_mels, frames)`` transposed to Keras' ``(frames, mels)`` orientation
  and copied to 3 channels;
* ``Conv1``: 3x3, stride 2, ``make_divisible(32 * alpha)`` = 16 channels, no bias, BN, ReLU6;
* the 17 inverted-residual blocks of MobileNetV2 (the same (t, c, n, s) rows as Table 1's
  bottlenecks, channels ``make_divisible(c * alpha)``): 1x1 expansion (absent in the first block),
  3x3 depthwise, linear 1x1 projection, each conv without bias and followed by BN; a residual
  sum where stride is 1 and the channel counts agree;
* ``Conv_1``: 1x1 to 1280 channels (Keras keeps 1280 for alpha <= 1), BN, ReLU6;
* global average pooling, then ``Dense(n_sections)`` with a softmax (here: logits, the softmax is
  in the loss and in the score).

Keras details kept: stride-2 convolutions pad like TensorFlow's ``"same"`` (zero rows and columns
after the map, none before, for even sizes: :class:`SamePad`); BatchNorm ``epsilon=1e-3`` and
``momentum=0.999`` (torch ``momentum=0.001``); Glorot-uniform kernels and zero biases (Keras'
defaults). Where this differs from the Table 1 encoder (:class:`~dgmix.models.mobilenet.Encoder`):
three input channels, the 1280-channel last conv instead of the 320-channel 1x1 / 4x2 / 1x1 head,
average pooling, and one linear layer to the sections instead of Linear(320, 128)-ReLU-Linear.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dgmix.models.mobilenet import BOTTLENECK_SETTINGS, make_divisible

__all__ = ["BN_EPS", "BN_MOMENTUM", "LAST_CHANNELS", "BaselineNet", "SamePad", "baseline_classifier"]

BN_EPS = 1e-3
#: Keras' BatchNormalization momentum 0.999 (weight of the old running value) in torch's convention
BN_MOMENTUM = 0.001
#: channels of Keras MobileNetV2's last 1x1 conv for alpha <= 1
LAST_CHANNELS = 1280


class SamePad(nn.Module):
    """TensorFlow ``"same"`` padding of a stride-2 3x3 conv: ``max(3 - 2, 0)`` = 1 zero row / column
    in all for even sizes, placed after the map; 2 (one on each side) for odd sizes."""

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = 1 if h % 2 == 0 else 2, 1 if w % 2 == 0 else 2
        return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    if stride == 2:
        layers.append(SamePad())
    layers += [nn.Conv2d(cin, cout, kernel, stride, padding=0 if stride == 2 else (kernel - 1) // 2, groups=groups,
                         bias=False),
               nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class _Block(nn.Module):
    """Keras MobileNetV2's ``_inverted_res_block``."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, first: bool) -> None:
        super().__init__()
        hidden = cin * expansion
        layers = [] if first else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, relu=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class BaselineNet(nn.Module):
    """Keras MobileNetV2 (alpha ``width_mult``) without its classifier: window ``(N, 1, n_mels,
    frames)`` -> ``(N, 1280)`` after global average pooling (module docstring).

    ``input_size`` is (mel bins, frames) of the window, as for the Table 1 encoder; the network
    itself works on any size of at least 32 x 32 (average pooling), so it is only checked.
    """

    def __init__(self, width_mult: float = 0.5, input_size: tuple[int, int] = (128, 64)) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        self.width_mult = float(width_mult)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.embed_dim = self.embed_dim_for(width_mult)
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn(3, channels, 3, 2)]
        for row, (t, c, n, s) in enumerate(BOTTLENECK_SETTINGS):
            out = make_divisible(int(c * width_mult))
            for i in range(n):
                layers.append(_Block(channels, out, s if i == 0 else 1, t, first=row == 0))
                channels = out
        layers.append(_conv_bn(channels, self.embed_dim, 1))
        self.features = nn.Sequential(*layers)
        self.reset_parameters()

    @staticmethod
    def embed_dim_for(width_mult: float) -> int:
        """Channels of the last conv, the pooled feature size: 1280, more for alpha > 1 (Keras)."""
        return LAST_CHANNELS if width_mult <= 1.0 else make_divisible(LAST_CHANNELS * width_mult)

    def reset_parameters(self) -> None:
        """Keras' defaults: Glorot-uniform kernels (depthwise ones too), zero biases, BN 1 / 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Keras' fans of a (kh, kw, in/groups, out) kernel; a depthwise kernel is (kh, kw, in, 1)
                rf = m.kernel_size[0] * m.kernel_size[1]
                fan_in = rf * m.in_channels // m.groups
                fan_out = rf * (1 if m.groups > 1 else m.out_channels)
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                nn.init.uniform_(m.weight, -bound, bound)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"BaselineNet expects input of shape (N, 1, {self.input_size[0]}, {self.input_size[1]}), "
                             f"got {tuple(x.shape)}")
        x = x.transpose(2, 3).expand(-1, 3, -1, -1)  # Keras: (frames, mels), the window copied 3 times
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)


def baseline_classifier(in_dim: int, n_classes: int) -> nn.Linear:
    """Keras' ``Dense(n_classes)``: Glorot-uniform weight, zero bias (logits; the softmax is in the loss)."""
    if n_classes < 1:
        raise ValueError(f"baseline classifier: n_classes >= 1 is required, got {n_classes}")
    head = nn.Linear(in_dim, n_classes)
    nn.init.xavier_uniform_(head.weight)
    nn.init.zeros_(head.bias)
    return head
