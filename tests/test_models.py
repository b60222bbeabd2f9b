"""Encoder (paper Table 1), Expander and SectionClassifier."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dgmix.models import Encoder, Expander, SectionClassifier, count_parameters, multiply_adds

# Table 1 with the output (channels, mel, frames) of each row for a 1 x 128 x 64 input.
TABLE1 = [
    # name, t, c, n, s, output shape
    ("conv3x3", None, 16, 1, 2, (16, 64, 32)),
    ("bottleneck1", 1, 8, 1, 1, (8, 64, 32)),
    ("bottleneck2", 6, 16, 2, 2, (16, 32, 16)),
    ("bottleneck3", 6, 16, 3, 2, (16, 16, 8)),
    ("bottleneck4", 6, 32, 4, 2, (32, 8, 4)),
    ("bottleneck5", 6, 48, 3, 1, (48, 8, 4)),
    ("bottleneck6", 6, 80, 3, 2, (80, 4, 2)),
    ("bottleneck7", 6, 160, 1, 1, (160, 4, 2)),
    ("conv1x1", None, 320, 1, 1, (320, 4, 2)),
    ("conv4x2", None, 320, 1, 1, (320, 1, 1)),
    ("conv1x1_out", None, 320, 1, 1, (320, 1, 1)),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Conv forward passes of this tiny network are ~100x slower with 2 OpenMP threads when the
    CPU is shared (threads spin-wait for each other); one thread keeps these tests fast."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _expected_param_count() -> int:
    """Parameter count from Table 1 by hand: BN = 2 per channel, convs without bias except the
    last one."""
    total = 9 * 1 * 16 + 2 * 16  # conv3x3 (1 input channel) + BN
    c_in = 16
    for _name, t, c, n, _s, _shape in TABLE1[1:8]:
        for _ in range(n):
            hidden = c_in * t
            if t != 1:
                total += c_in * hidden + 2 * hidden  # expansion 1x1 + BN
            total += 9 * hidden + 2 * hidden  # depthwise 3x3 + BN
            total += hidden * c + 2 * c  # linear projection + BN
            c_in = c
    total += 160 * 320 + 2 * 320  # conv1x1 + BN
    total += 320 * 320 * 4 * 2 + 2 * 320  # full 4x2 conv (no bias) + BN
    total += 320 * 320 + 320  # conv1x1 with bias
    return total


def test_parameter_count_matches_paper() -> None:
    enc = Encoder()
    assert count_parameters(enc) == 1_454_432
    assert _expected_param_count() == 1_454_432


def test_table1_row_shapes() -> None:
    enc = Encoder().eval()
    assert [name for name, _ in enc.stages.named_children()] == [r[0] for r in TABLE1]
    with torch.no_grad():
        rows = enc.forward_features(torch.randn(2, 1, 128, 64), return_rows=True)
    assert len(rows) == len(TABLE1)
    for (name, out), (ref_name, _t, c, n, _s, shape) in zip(rows, TABLE1):
        assert name == ref_name
        assert tuple(out.shape) == (2, *shape), name
        assert shape[0] == c
        if name.startswith("bottleneck"):
            assert len(enc.stages.get_submodule(name)) == n


def test_bottleneck_structure() -> None:
    enc = Encoder()
    first = enc.stages.bottleneck1[0]  # t = 1: no expansion, depthwise first
    dw = first.conv[0][0]
    assert isinstance(dw, nn.Conv2d) and dw.groups == dw.in_channels == 16
    assert not first.use_residual  # 16 -> 8 channels
    second = enc.stages.bottleneck2
    assert [b.use_residual for b in second] == [False, True]  # stride 2, then 16 -> 16 stride 1
    expand = second[0].conv[0][0]
    assert expand.kernel_size == (1, 1) and expand.out_channels == 8 * 6
    proj = second[0].conv[-2]
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == (1, 1)
    assert isinstance(second[0].conv[-1], nn.BatchNorm2d)  # linear bottleneck: no activation
    conv4x2 = enc.stages.conv4x2[0]
    assert conv4x2.kernel_size == (4, 2) and conv4x2.groups == 1 and conv4x2.bias is None
    last = enc.stages.conv1x1_out
    assert isinstance(last, nn.Conv2d) and last.bias is not None


def test_forward_shape_and_backward() -> None:
    enc = Encoder()
    x = torch.randn(3, 1, 128, 64)
    y = enc(x)
    assert y.shape == (3, 320)
    y.square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_input_shape() -> None:
    enc = Encoder()
    with pytest.raises(ValueError, match=r"\(N, 1, 128, 64\)"):
        enc(torch.randn(2, 1, 128, 32))
    with pytest.raises(ValueError, match="got"):
        enc(torch.randn(1, 128, 64))


def test_channels_last_matches() -> None:
    torch.manual_seed(0)
    enc = Encoder().eval()
    x = torch.randn(4, 1, 128, 64)
    with torch.inference_mode():
        ref = enc(x)
        enc_cl = enc.to(memory_format=torch.channels_last)
        out = enc_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_one_channel_equals_three_copies() -> None:
    """Table 1's 3-channel input (3 copies of the map) equals one channel with summed kernels."""
    torch.manual_seed(0)
    enc3 = Encoder(in_channels=3).eval()
    enc1 = Encoder(in_channels=1).eval()
    state = enc3.state_dict()
    state["stages.conv3x3.0.weight"] = state["stages.conv3x3.0.weight"].sum(dim=1, keepdim=True)
    enc1.load_state_dict(state)
    x = torch.randn(2, 1, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(enc1(x), enc3(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


def test_init_and_options() -> None:
    torch.manual_seed(0)
    enc = Encoder()
    w = enc.stages.conv4x2[0].weight  # fan_out = 320 * 4 * 2
    assert abs(w.std().item() - math.sqrt(2.0 / (320 * 8))) < 0.02 * math.sqrt(2.0 / 2560)
    assert torch.all(enc.stages.conv1x1_out.bias == 0)
    bn = enc.stages.conv3x3[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert Encoder(embed_dim=64)(torch.randn(2, 1, 128, 64)).shape == (2, 64)
    wide = Encoder(width_mult=1.0)
    assert wide.stages.bottleneck7[0].conv[-2].out_channels == 320
    assert multiply_adds(Encoder()) == pytest.approx(14.75e6, rel=1e-3)  # convs, BN folded
    # Table 1 (MobileNetV2): every activation of the encoder is ReLU6
    assert {type(m) for m in enc.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))} == {nn.ReLU6}


def test_expander() -> None:
    exp = Expander()
    linears = [m for m in exp.modules() if isinstance(m, nn.Linear)]
    bns = [m for m in exp.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [(320, 1280), (1280, 1280),
                                                                   (1280, 1280)]
    assert len(bns) == 3 and isinstance(exp.net[-1], nn.ReLU)
    z = exp(torch.randn(8, 320))
    assert z.shape == (8, 1280) and (z >= 0).all()
    assert count_parameters(exp) == (320 * 1280 + 1280) + 2 * (1280 * 1280 + 1280) + 3 * 2560
    # paper §3.3: every layer, the last one included, is followed by BN and ReLU
    assert [type(m) for m in exp.net] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 3
    with pytest.raises(RuntimeError, match="320"):  # torch's own shape check
        exp(torch.randn(8, 100))


def test_section_classifier() -> None:
    clf = SectionClassifier(n_classes=6)
    assert clf(torch.randn(5, 320)).shape == (5, 6)
    layers = list(clf.net)
    assert isinstance(layers[0], nn.Linear) and layers[0].out_features == 128
    assert isinstance(layers[1], nn.ReLU)
    assert isinstance(layers[2], nn.Linear) and layers[2].out_features == 6
    assert SectionClassifier(320, 128, 3)(torch.randn(2, 320)).shape == (2, 3)
    with pytest.raises(ValueError, match="n_classes"):
        SectionClassifier()
