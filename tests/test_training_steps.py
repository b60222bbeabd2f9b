"""What one training step does: lambda's direction in the DG-Mix task, the encoder's mode when
embedding, and a few fine-tuning steps lowering the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dgmix.config import load_config
from dgmix.training.common import training_clips
from dgmix.training.distributed import DistContext
from dgmix.training.finetune import FinetuneTask
from dgmix.training.pretrain import Branches, PretrainTask


@pytest.fixture(scope="module")
def clips(tiny_synth, feature_cache):
    return training_clips(tiny_synth, "fan", load_config("tiny"), feature_cache, DistContext(), progress=False)


def test_lambda_direction_in_the_dgmix_task(clips):
    """X_lam = lam X + (1 - lam) X' goes in, and eq. (1) compares Z_lam with lam Z + (1 - lam) Z'.
    With an affine encoder and an identity expander the two agree exactly, so the consistency
    term is ~0; with lambda the other way round it is not."""
    cfg = load_config("tiny")
    task = PretrainTask(clips, cfg, DistContext())
    p = cfg.features
    torch.manual_seed(0)
    affine = nn.Sequential(nn.Flatten(), nn.Linear(p.n_mels * p.frames, 8))
    model = Branches(affine, nn.Identity())
    x = clips.windows.batch(np.arange(0, 16))
    x2 = clips.windows.batch(np.arange(16, 32))
    lam = torch.linspace(0.05, 0.9, 16)
    terms = task.dgmix_terms(model, x, x2, lam)
    z, z2 = affine(x), affine(x2)
    scale = float((z - z2).detach().pow(2).mean())
    assert float(terms["consistency"].detach()) < 1e-8 * scale
    flipped = task.loss(z, z2, affine(lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x2), 1 - lam)
    assert float(flipped["consistency"].detach()) > 1e-2 * scale


def test_the_detector_embeds_with_the_running_statistics(clips):
    """A detector scores with the BN running statistics (an eval-mode, BN-folded copy of the
    encoder), whatever mode the trained encoder was in, and leaves that encoder as it was."""
    from dgmix.scoring.detector import inference_encoder

    cfg = load_config("tiny")
    task = FinetuneTask(clips, cfg, DistContext())
    enc = task.module.encoder
    with torch.no_grad():  # give the BN layers non-trivial running statistics
        enc.train()
        enc(clips.windows.batch(np.arange(32)))
    window = torch.from_numpy(clips.features[0][None, None, :, : cfg.features.frames].copy())
    with torch.no_grad():
        got = inference_encoder(enc)(window)
        assert enc.training
        enc.eval()
        first = enc(window)
        enc.train()
        train_mode = enc(clips.windows.batch(np.arange(4)))
    torch.testing.assert_close(got, first, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(train_mode[:1], first, atol=1e-3)


def test_a_few_finetuning_steps_lower_the_loss(clips):
    """Five AdamW steps (lr 1e-3) on one fixed batch, partners and lambdas: the loss falls."""
    cfg = load_config("tiny")
    torch.manual_seed(0)
    task = FinetuneTask(clips, cfg, DistContext())
    opt = torch.optim.AdamW(task.module.parameters(), lr=1e-3)
    idx = torch.arange(16)
    losses = []
    for _ in range(5):
        task.module.train()
        terms = task.step(task.module, idx, torch.Generator().manual_seed(0))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_joined_views_share_batch_norm_statistics(clips, stage):
    """pretrain/finetune.joined_views: one pass over X, X', X_lam. With a linear map followed by
    training-mode BatchNorm (affine for a fixed batch), eq. (1) is ~0 only when the three views
    share BN statistics; with a pass per view each branch normalises its own batch."""
    cfg = load_config("tiny")
    p = cfg.features
    x = clips.windows.batch(np.arange(0, 16))
    x2 = clips.windows.batch(np.arange(16, 32))
    lam = torch.linspace(0.05, 0.9, 16)
    xm = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x2
    consistency = {}
    for joined in (False, True):
        getattr(cfg, stage).joined_views = joined
        torch.manual_seed(0)
        d = cfg.model.embed_dim
        encoder = nn.Sequential(nn.Flatten(), nn.Linear(p.n_mels * p.frames, d), nn.BatchNorm1d(d))
        if stage == "pretrain":
            task = PretrainTask(clips, cfg, DistContext())
            assert task.module.joined is joined
            model = Branches(encoder, nn.Identity(), joined=joined)
            z, z2, zm = model(x, x2, xm)
        else:
            task = FinetuneTask(clips, cfg, DistContext())
            assert task.module.joined is joined
            task.module.encoder = encoder
            z, z2, zm, _ = task.module(x, x2, xm)
        scale = float((z - z2).detach().pow(2).mean())
        consistency[joined] = float(task_loss_consistency(z, z2, zm, lam)) / scale
    assert consistency[True] < 1e-8 and consistency[False] > 1e-3, consistency


def task_loss_consistency(z, z2, zm, lam):
    from dgmix.losses import consistency_term

    return consistency_term(z, z2, zm, lam).detach()
