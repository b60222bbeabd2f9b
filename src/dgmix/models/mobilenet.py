"""Modified MobileNetV2 encoder f_theta of DG-Mix (paper §3.2, Table 1).

Table 1 (width multiplier 0.5), with the spatial shape (mel x frames x channels) after each row
for a 128 x 64 input:

=====  ==================  ===  ===  ===  ===  ================
row    operator             t    c    n    s   output
=====  ==================  ===  ===  ===  ===  ================
0      conv2d 3x3           -    16   1    2    64 x 32 x 16
1      bottleneck           1    8    1    1    64 x 32 x 8
2      bottleneck           6    16   2    2    32 x 16 x 16
3      bottleneck           6    16   3    2    16 x 8 x 16
4      bottleneck           6    32   4    2    8 x 4 x 32
5      bottleneck           6    48   3    1    8 x 4 x 48
6      bottleneck           6    80   3    2    4 x 2 x 80
7      bottleneck           6    160  1    1    4 x 2 x 160
8      conv2d 1x1           -    320  1    1    4 x 2 x 320
9      conv2d 4x2           -    320  1    1    1 x 1 x 320
10     conv2d 1x1           -    320  1    1    1 x 1 x 320
=====  ==================  ===  ===  ===  ===  ================

The channel counts are torchvision's MobileNetV2 settings (32, 16, 24, 32, 64, 96, 160, 320)
scaled by 0.5 and rounded to a multiple of 8, which is what Table 1 prints.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

__all__ = ["BOTTLENECK_SETTINGS", "ROW_NAMES", "ConvBNReLU6", "Encoder", "InvertedResidual", "count_parameters",
           "make_divisible", "multiply_adds"]

#: (t, c, n, s) rows of MobileNetV2 at width 1.0; ``width_mult=0.5`` gives Table 1's channels.
BOTTLENECK_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

#: Names of the rows of Table 1, in order, as used in ``Encoder.stages``.
ROW_NAMES: tuple[str, ...] = ("conv3x3", *(f"bottleneck{i}" for i in range(1, 8)), "conv1x1", "conv4x2", "conv1x1_out")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``) without losing
    more than 10 %. This is the channel rounding rule of the MobileNet papers (so width 0.5 maps 24 -> 16).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6 (Table 1, MobileNetV2), "same" padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int = 1, groups: int = 1, padding: int | tuple[int, int] | None = None) -> None:
        if padding is None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = ((ks[0] - 1) // 2, (ks[1] - 1) // 2)
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck (Sandler et al. 2018): expand 1x1 -> depthwise 3x3 -> linear 1x1.

    The 1x1 expansion (+BN+ReLU6) is present only when ``expand_ratio != 1``; the projection is
    linear (1x1 conv + BN, no activation). A residual connection is used when ``stride == 1`` and
    the input and output channel counts are equal.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, kernel_size=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


def _final_map_size(input_size: tuple[int, int], n_stride2: int) -> tuple[int, int]:
    """Spatial size after ``n_stride2`` stride-2 3x3 convolutions with padding 1 (ceil(n/2))."""
    h, w = input_size
    for _ in range(n_stride2):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


class Encoder(nn.Module):
    """Modified MobileNetV2 encoder of DG-Mix (paper §3.2, Table 1): (N, 1, 128, 64) -> (N, 320).

    Architecture: conv3x3 (16, stride 2) + BN + ReLU6; the seven inverted-residual rows of Table 1;
    conv1x1 -> 320 + BN + ReLU6; a *full* (not depthwise) convolution whose kernel covers the
    whole remaining 4 x 2 map -> 1 x 1 x 320; a final conv1x1 -> ``embed_dim`` with bias and no
    normalisation or activation (the embedding Y used by the expander, the classifier and the
    k-NN scorer). The rows are exposed as ``self.stages``, an ``nn.Sequential`` whose children
    are named as in :data:`ROW_NAMES`.

    Input channels: Table 1 lists a 128 x 64 x 3 input because the Keras baseline copies the
    one-channel log-mel map three times. One input channel is equivalent (a 3-channel conv on
    three identical copies equals a 1-channel conv whose kernel is the sum of the three) and
    cheaper, so ``in_channels`` defaults to 1.

    Parameter count: with ``width_mult=0.5`` this module has exactly 1,454,432 parameters, the
    paper's "1.45M". The paper does not say how the 4x2 and the last 1x1 convolutions are
    normalised; 1,454,432 is obtained when the 4x2 conv has no bias and is followed by
    BatchNorm (+ReLU6, torchvision's Conv-BN-ReLU6 block, as every other non-final conv here)
    and the last 1x1 conv has a bias and no BN. Alternatives give: 4x2 with bias and no BN
    1,454,112; 4x2 without bias or BN 1,453,792; 4x2 with bias and BN 1,454,752; 4x2 + BN but
    last 1x1 without bias 1,454,112; a depthwise 4x2 conv 637,472-637,792. The ReLU6 after the
    4x2 conv's BN has no parameters, so the count cannot confirm it; it is our interpretation.

    Weight init (as torchvision's MobileNetV2, re-implemented): Kaiming-normal (fan_out) for the
    convolutions, zero biases, BatchNorm weight 1 / bias 0.

    channels_last: the model works unchanged with ``model.to(memory_format=torch.channels_last)``
    and channels_last inputs (``x.contiguous(memory_format=torch.channels_last)``); every training
    stage uses that layout (faster on CPU, BENCHMARKS.md §1, and on GPUs with mixed precision).

    Args:
        width_mult: MobileNetV2 width multiplier (Table 1: 0.5).
        in_channels: input channels (1, see above).
        embed_dim: size of the output embedding (320).
        input_size: (mel bins, frames) of the input; fixes the kernel of the "4x2" convolution
            (the spatial size left after the five stride-2 layers: ceil(128/32) x ceil(64/32)).
        head_channels: channels of the conv1x1 after the bottlenecks and of the 4x2 conv;
            defaults to ``embed_dim`` (Table 1: 320).
    """

    def __init__(self, width_mult: float = 0.5, in_channels: int = 1, embed_dim: int = 320,
                 input_size: tuple[int, int] = (128, 64), head_channels: int | None = None) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if in_channels < 1 or embed_dim < 1:
            raise ValueError(f"in_channels and embed_dim must be >= 1, got {in_channels}, {embed_dim}")
        self.width_mult = float(width_mult)
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        head = self.embed_dim if head_channels is None else int(head_channels)

        rows: list[tuple[str, nn.Module]] = []
        channels = make_divisible(32 * width_mult)
        rows.append((ROW_NAMES[0], ConvBNReLU6(in_channels, channels, kernel_size=3, stride=2)))
        n_stride2 = 1
        for row, (t, c, n, s) in enumerate(BOTTLENECK_SETTINGS, start=1):
            out = make_divisible(c * width_mult)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
            n_stride2 += int(s == 2)
            rows.append((ROW_NAMES[row], nn.Sequential(*blocks)))
        rows.append((ROW_NAMES[8], ConvBNReLU6(channels, head, kernel_size=1)))
        self.final_map_size = _final_map_size(self.input_size, n_stride2)
        rows.append((ROW_NAMES[9], ConvBNReLU6(head, head, kernel_size=self.final_map_size, padding=0)))
        rows.append((ROW_NAMES[10], nn.Conv2d(head, self.embed_dim, kernel_size=1, bias=True)))
        self.stages = nn.Sequential(OrderedDict(rows))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out) convs, zero biases, unit BN weights (torchvision's scheme)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, *self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"Encoder expects input of shape (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(x.shape)}"
            )

    def forward_features(
        self, x: Tensor, return_rows: bool = False
    ) -> Tensor | list[tuple[str, Tensor]]:
        """Run the rows of Table 1.

        Returns the final (N, embed_dim, 1, 1) map, or with ``return_rows=True`` the list of
        ``(row name, output)`` for every row of Table 1.
        """
        self._check_input(x)
        if not return_rows:
            return self.stages(x)
        outputs: list[tuple[str, Tensor]] = []
        for name, stage in self.stages.named_children():
            x = stage(x)
            outputs.append((name, x))
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, 128, 64) log-mel windows -> (N, embed_dim) embeddings Y."""
        return torch.flatten(self.forward_features(x), 1)


def multiply_adds(encoder: Encoder) -> int:
    """Multiply-adds of one forward pass for one window (convs only; BN folded into them)."""
    total = 0
    hooks = []

    def hook(module: nn.Conv2d, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += int(out.shape[1] * out.shape[2] * out.shape[3] * k)

    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            p = next(encoder.parameters())
            encoder(torch.zeros(1, encoder.in_channels, *encoder.input_size, device=p.device,
                                dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        encoder.train(was_training)
    return total

