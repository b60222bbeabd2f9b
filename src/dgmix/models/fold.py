"""Inference copies of a trained encoder: BatchNorm folded into the convolutions.

In eval mode a BatchNorm after a convolution is an affine map per output channel,
``y = (conv(x) - mu) / sqrt(var + eps) * gamma + beta``, so it can be folded into the
convolution's weight and bias: ``w' = w * s`` and ``b' = (b - mu) * s + beta`` with
``s = gamma / sqrt(var + eps)``. The folded network computes the same function with one
operation fewer per layer, which is what scoring wants; training keeps the unfolded module.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_batchnorm"]


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused.to(conv.weight.device, conv.weight.dtype)


def _fold_children(module: nn.Module) -> None:
    names = list(module._modules)
    for i, name in enumerate(names):
        child = module._modules[name]
        nxt = module._modules[names[i + 1]] if i + 1 < len(names) else None
        if isinstance(child, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d) and nxt.track_running_stats:
            module._modules[name] = _fold_pair(child, nxt)
            module._modules[names[i + 1]] = nn.Identity()
        elif child is not None:
            _fold_children(child)


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode with every ``Conv2d`` directly followed by a
    ``BatchNorm2d`` (in the same ``nn.Sequential``-like container) folded into one ``Conv2d``.
    The original is left unchanged. Equal to ``module.eval()`` up to float rounding."""
    folded = copy.deepcopy(module).eval()
    _fold_children(folded)
    return folded
