"""cuda_graphs: forward (dgmix.training.graphs): a no-op on CPU, refused under DDP, eager outside training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgmix.config import load_config
from dgmix.training.distributed import DistContext
from dgmix.training.graphs import GraphedForward, maybe_graph


def test_config_field_defaults_off_and_validates():
    assert load_config("paper").finetune.cuda_graphs == "none"
    assert load_config("paper", overrides={"finetune": {"cuda_graphs": "forward"}}).finetune.cuda_graphs == "forward"
    # the boolean of older config files: true was this wrapper
    assert load_config("paper", overrides={"finetune": {"cuda_graphs": True}}).finetune.cuda_graphs == "forward"


def test_cpu_leaves_the_model_as_it_is():
    model = nn.Linear(3, 2)
    assert maybe_graph(model, True, DistContext()) is model
    assert maybe_graph(model, False, DistContext(device=torch.device("cuda"))) is model


def test_ddp_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="DDP"):
        maybe_graph(nn.Linear(3, 2), True, DistContext(rank=0, world_size=2, device=torch.device("cuda")))


def test_wrapper_runs_cpu_and_eval_calls_eagerly_with_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    wrapped = GraphedForward(inner)
    x = torch.randn(16, 4)
    ref = inner(x)
    ref.sum().backward()
    ref_grads = [p.grad.clone() for p in inner.parameters()]
    inner.zero_grad()
    out = wrapped(x)
    out.sum().backward()
    assert torch.equal(out, ref)
    assert all(torch.equal(p.grad, g) for p, g in zip(inner.parameters(), ref_grads))
    assert wrapped._graphed is None  # nothing was captured on a CPU
    wrapped.eval()
    assert torch.equal(wrapped(x), inner.eval()(x))
