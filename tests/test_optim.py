"""LARS and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dgmix.optim import LARS, WarmupCosine, param_groups, scaled_lr


def test_scaled_lr() -> None:
    assert scaled_lr(1024) == pytest.approx(0.8)
    assert scaled_lr(256, base=0.3) == pytest.approx(0.3)


def test_schedule_values_by_hand() -> None:
    # base 0.8, 10 warm-up epochs, 100 epochs, final 0.002 (absolute):
    # epoch 5: 0.8 * 5/10; epoch 55: halfway through the cosine -> (0.8 + 0.002) / 2
    sched = WarmupCosine(0.8, warmup_epochs=10, total_epochs=100, final_lr=0.002)
    assert sched.lr_at(0) == 0.0
    assert sched.lr_at(5) == pytest.approx(0.4)
    assert sched.lr_at(10) == pytest.approx(0.8)
    assert sched.lr_at(55) == pytest.approx(0.401)
    assert sched.lr_at(100) == pytest.approx(0.002)
    assert sched.lr_at(150) == pytest.approx(0.002)
    k = 30 - 10
    assert sched.lr_at(30) == pytest.approx(0.002 + 0.798 * 0.5 * (1 + math.cos(math.pi * k / 90)))
    per_step = WarmupCosine(0.8, 10, 100, 0.002, steps_per_epoch=7)
    for epoch in (0, 5, 10, 55, 100):
        assert per_step.lr_at(epoch * 7) == pytest.approx(sched.lr_at(epoch))
    assert per_step.lr_at(1) == pytest.approx(0.8 / 70)
    relative = WarmupCosine(0.8, final_lr=0.001, relative_final=True)  # VICReg's end value
    assert relative.lr_at(100) == pytest.approx(0.0008)
    values = [sched.lr_at(s) for s in range(10, 101)]
    assert np.all(np.diff(values) <= 0)
    with pytest.raises(ValueError, match="warmup"):
        WarmupCosine(0.8, warmup_epochs=20, total_epochs=10)


def _two_param_model() -> nn.Linear:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        model.bias.copy_(torch.tensor([0.1, -0.2]))
    return model


def test_lars_steps_by_hand() -> None:
    lr, wd, eta, mom = 0.5, 0.01, 0.001, 0.9
    model = _two_param_model()
    opt = LARS(model.parameters(), lr=lr, weight_decay=wd, momentum=mom, eta=eta)
    w = model.weight.detach().numpy().astype(np.float64).copy()
    b = model.bias.detach().numpy().astype(np.float64).copy()
    grads = [(np.array([[0.3, -0.2, 0.1], [0.0, 0.4, -0.6]]), np.array([0.05, -0.5])),
             (np.array([[-0.1, 0.2, 0.3], [0.2, -0.1, 0.05]]), np.array([0.2, 0.1]))]
    mu_w = mu_b = None
    for gw, gb in grads:
        model.weight.grad = torch.tensor(gw, dtype=torch.float32)
        model.bias.grad = torch.tensor(gb, dtype=torch.float32)
        opt.step()
        # weight: decay, then trust ratio eta * ||w|| / ||g + wd w||, then momentum
        dw = gw + wd * w
        dw = dw * (eta * np.sqrt((w ** 2).sum()) / np.sqrt((dw ** 2).sum()))
        mu_w = dw if mu_w is None else mom * mu_w + dw
        w = w - lr * mu_w
        # bias (1-D): no decay, no adaptation
        mu_b = gb if mu_b is None else mom * mu_b + gb
        b = b - lr * mu_b
        np.testing.assert_allclose(model.weight.detach().numpy(), w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(model.bias.detach().numpy(), b, rtol=1e-5, atol=1e-7)


def test_lars_without_filters_and_zero_norm() -> None:
    lr, wd, eta = 0.5, 0.01, 0.001
    model = _two_param_model()
    opt = LARS(model.parameters(), lr=lr, weight_decay=wd, eta=eta, exclude_bias_and_norm=False)
    gb = np.array([0.05, -0.5])
    b = model.bias.detach().numpy().astype(np.float64).copy()
    model.weight.grad = torch.zeros(2, 3)
    model.bias.grad = torch.tensor(gb, dtype=torch.float32)
    opt.step()
    db = gb + wd * b
    db = db * eta * np.linalg.norm(b) / np.linalg.norm(db)
    np.testing.assert_allclose(model.bias.detach().numpy(), b - lr * db, rtol=1e-5)
    # a zero parameter gets trust ratio 1 (plain SGD step)
    p = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([p], lr=0.1)
    p.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((2, 2), -0.1))


def test_param_groups() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    groups = param_groups(model, weight_decay=1e-4)
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    assert [tuple(p.shape) for p in groups[0]["params"]] == [(3, 4), (2, 3)]
    assert all(p.ndim == 1 for p in groups[1]["params"]) and len(groups[1]["params"]) == 4


def test_param_groups_keep_bias_and_norm_out_of_adamw_decay() -> None:
    """With zero gradients an AdamW step is pure decoupled weight decay, p <- p (1 - lr wd): the
    weights shrink, the biases and BN parameters do not move."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(param_groups(model, weight_decay=0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.5) if p.ndim > 1 else before[n]
        torch.testing.assert_close(p.detach(), expected, msg=n)
