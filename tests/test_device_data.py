"""The device-resident training path (used on CUDA), checked on the CPU against the host path: the
same windows, the same draws, the same loss and, over whole stages, the same weights. On the CPU
the path is forced by patching :func:`dgmix.training.device_data.use_device_data`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgmix.augment.pairs import PairSampler
from dgmix.config import load_config
from dgmix.features import WindowDataset
from dgmix.training import device_data, finetune, pretrain
from dgmix.training.common import training_clips
from dgmix.training.device_data import DeviceWindows, beta_on_device, use_device_data
from dgmix.training.distributed import DistContext
from dgmix.training.finetune import FinetuneTask
from dgmix.training.pretrain import PretrainTask


def test_device_windows_equal_the_host_windows():
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(16, n)).astype(np.float32) for n in (40, 71, 20, 33)]  # one clip too short
    ds = WindowDataset(feats, frames=12, hop=5, labels=[3, 1, 4, 1])
    dev = DeviceWindows(ds, "cpu")
    assert len(dev) == len(ds)
    idx = torch.from_numpy(rng.integers(0, len(ds), size=50))
    assert torch.equal(dev.batch(idx), ds.batch(idx.numpy()))
    assert torch.equal(dev.labels(idx), ds.batch_labels(idx.numpy()))
    assert dev.nbytes == sum(f.size for f in feats) * 4 + len(ds) * 8


def test_data_lives_on_the_device_when_training_on_cuda():
    assert use_device_data(torch.device("cuda")) and use_device_data("cuda:0")
    assert not use_device_data(torch.device("cpu"))


def test_beta_on_device_has_the_beta_moments():
    g = torch.Generator().manual_seed(0)
    lam = beta_on_device(200_000, 0.5, g)
    assert lam.shape == (200_000,) and lam.min() >= 0 and lam.max() <= 1
    assert float(lam.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(lam.var()) == pytest.approx(0.125, abs=0.01)  # a^2 / ((2a)^2 (2a + 1)) at a = 0.5


def test_pair_sampler_moves_to_a_device_and_draws_the_same_pairs():
    sections = np.repeat([0, 1], 50)
    domains = np.tile(np.r_[np.zeros(45), np.ones(5)], 2).astype(int)
    host = PairSampler(100, sections, domains, shares=[1, 1, 1])
    moved = PairSampler(100, sections, domains, shares=[1, 1, 1]).to("cpu")
    idx = torch.arange(100)
    a1, b1 = host(idx, torch.Generator().manual_seed(3))
    a2, b2 = moved(idx, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)


@pytest.fixture(scope="module")
def clips(tiny_synth, feature_cache):
    return training_clips(tiny_synth, "fan", load_config("tiny"), feature_cache, DistContext(), progress=False)


@pytest.mark.parametrize("task_cls", [PretrainTask, FinetuneTask])
def test_a_device_resident_step_equals_the_host_step(clips, task_cls, monkeypatch):
    losses = []
    cfg = load_config("tiny")
    for resident in (False, True):
        monkeypatch.setattr(device_data, "use_device_data", lambda device, on=resident: on)
        torch.manual_seed(0)
        task = task_cls(clips, cfg, DistContext())
        assert (task.resident is not None) == resident
        gen = torch.Generator().manual_seed(11)
        idx = torch.arange(0, 16).to(task.index_device)
        losses.append({k: float(v.detach()) for k, v in task.step(task.module, idx, gen).items()})
    assert losses[0] == losses[1]


def test_whole_stages_give_the_same_weights_with_data_on_the_device(tiny_synth, feature_cache, tmp_path,
                                                                     monkeypatch):
    states = {}
    cfg = load_config("tiny", overrides={"pretrain": {"epochs": 1, "warmup_epochs": 0}, "finetune": {"epochs": 1}})
    for setting in ("host", "device"):
        monkeypatch.setattr(device_data, "use_device_data", lambda device, on=setting == "device": on)
        out = tmp_path / setting
        pretrain(tiny_synth, "fan", cfg, out / "pre", feature_cache, progress=False)
        finetune(tiny_synth, "fan", cfg, out / "ft", feature_cache, init=out / "pre", progress=False)
        states[setting] = torch.load(out / "ft" / "encoder.pt", weights_only=True)["encoder"]
    for k, v in states["host"].items():
        assert torch.equal(v, states["device"][k]), k
