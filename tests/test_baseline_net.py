"""The official DCASE 2022 baseline's network (dgmix.models.baseline_net) against Keras' MobileNetV2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dgmix.models import BaselineNet
from dgmix.models.baseline_net import BN_EPS, BN_MOMENTUM, SamePad, baseline_classifier
from dgmix.models.fold import fold_batchnorm


def _keras_count(width: float, classes: int = 1000) -> int:
    """What Keras' model.summary() counts: parameters + BN moving mean/variance + the Dense top."""
    net = BaselineNet(width)
    params = sum(p.numel() for p in net.parameters())
    moving = sum(2 * m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    return params + moving + net.embed_dim * classes + classes


@pytest.mark.parametrize(("width", "keras_total"), [(0.5, 1_987_224), (1.0, 3_538_984)])
def test_parameter_count_is_keras_mobilenetv2(width, keras_total):
    # Keras' MobileNetV2(alpha=width, weights=None, classes=1000): "Total params" of its summary
    assert _keras_count(width) == keras_total


def test_layers_are_the_keras_ones():
    net = BaselineNet(0.5)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs[0].in_channels == 3 and convs[0].out_channels == 16 and convs[0].stride == (2, 2)
    assert convs[-1].out_channels == 1280 and convs[-1].kernel_size == (1, 1)
    assert all(c.bias is None for c in convs) and len(bns) == len(convs) == 52
    assert all(b.eps == BN_EPS and b.momentum == BN_MOMENTUM for b in bns)
    assert sum(isinstance(m, SamePad) for m in net.modules()) == 5  # Conv1 and the four stride-2 blocks


def test_same_padding_is_tensorflows():
    """TF "same", stride 2, kernel 3: pad_total = max(3 - (n % 2 or 2), 0); pad_before = pad_total // 2."""
    for n in (64, 128, 7, 33):
        total = max(3 - (n % 2 if n % 2 else 2), 0)
        x = torch.arange(float(n * n)).reshape(1, 1, n, n)
        padded = SamePad()(x)
        assert padded.shape[-1] == n + total
        before = total // 2
        assert torch.equal(padded[..., before:before + n, before:before + n], x)


def test_forward_is_keras_orientation_three_copies_and_average_pooling():
    torch.manual_seed(0)
    net = BaselineNet(0.5).eval()
    x = torch.randn(2, 1, 128, 64)
    y = net(x)
    assert y.shape == (2, 1280)
    # by hand: (frames, mels), three channels, the layers, the mean over the map
    ref = net.features(x.transpose(2, 3).repeat(1, 3, 1, 1)).mean(dim=(2, 3))
    torch.testing.assert_close(y, ref)
    with pytest.raises(ValueError, match="BaselineNet expects"):
        net(torch.randn(2, 1, 64, 128))


def test_glorot_uniform_init():
    torch.manual_seed(0)
    net = BaselineNet(0.5)
    first = net.features[0][1].weight  # (16, 3, 3, 3): fan_in 27, fan_out 144
    bound = math.sqrt(6 / (27 + 144))
    assert first.abs().max() <= bound and first.abs().max() > 0.9 * bound
    head = baseline_classifier(1280, 3)
    assert torch.equal(head.bias, torch.zeros(3)) and head.weight.abs().max() <= math.sqrt(6 / 1283)
    with pytest.raises(ValueError):
        baseline_classifier(1280, 0)


def test_folded_and_channels_last_compute_the_same():
    torch.manual_seed(1)
    net = BaselineNet(0.5)
    net.train()
    with torch.no_grad():  # move the BN statistics away from 0 / 1
        for _ in range(30):
            net(torch.randn(8, 1, 128, 64))
    net.eval()
    x = torch.randn(3, 1, 128, 64)
    folded = fold_batchnorm(net).to(memory_format=torch.channels_last)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules() if not isinstance(m, nn.Identity))
    torch.testing.assert_close(folded(x.contiguous(memory_format=torch.channels_last)), net(x), atol=1e-4, rtol=1e-4)


def test_trains_a_step():
    torch.manual_seed(2)
    net, head = BaselineNet(0.5), baseline_classifier(1280, 2)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-3)
    x, t = torch.randn(8, 1, 128, 64), torch.tensor([0, 1] * 4)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(head(net(x)), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
