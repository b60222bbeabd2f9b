"""The training measurement of bench_pretrain.py: one step of the real DG-Mix pre-training code.

One step is :meth:`dgmix.training.pretrain.PretrainTask.dgmix_terms` (mix X and X' into
X_lambda, forward the three views, DG-Mix loss), then ``zero_grad``, ``backward`` and a LARS step,
as in :func:`dgmix.training.loop.run_loop`. The batches are drawn once, before timing, from a real
:class:`dgmix.training.data.ClipSet` of random log-mel-like features.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from bench_common import sync
from bench_variants import Result, Variant, VariantSettings, out_of_place, run_rounds

from dgmix.augment import sample_lambda
from dgmix.config import load_config
from dgmix.features import WindowDataset
from dgmix.training.common import wrap_model
from dgmix.training.data import ClipSet
from dgmix.training.distributed import DistContext
from dgmix.training.pretrain import PretrainTask, build_optimizer, pair_sampler

__all__ = ["bench_train"]


def _make_task(v: Variant, batch: int, seed: int, device: str) -> tuple[Any, ...]:
    """A real PretrainTask + its wrapped model + LARS for variant ``v``, seeded identically."""
    cfg = load_config("cpu", overrides={"pretrain": {
        "batch_size": batch, "amp": v.amp, "warmup_epochs": 0,
        "optimizer": "lars", "joined_views": False,  # the step this benchmark describes (LARS, per view)
    }})
    # A real ClipSet of random log-mel-like features: 8 clips of 313 frames (10 s at hop 512).
    rng = np.random.default_rng(seed)
    feats = [(rng.standard_normal((128, 313)) * 5.0 - 20.0).astype(np.float32) for _ in range(8)]
    clips = ClipSet(machine="bench", records=[], features=feats, windows=WindowDataset(feats),
                    section_names=["00"], clip_section=np.zeros(8, dtype=np.int64),
                    clip_domain=np.zeros(8, dtype=np.int64), class_names=["00"],
                    clip_class=np.zeros(8, dtype=np.int64))
    ctx = DistContext(device=torch.device(device))
    torch.manual_seed(seed)
    task = PretrainTask(clips, cfg, ctx)  # channels-last, as training always is
    if not v.channels_last:  # the variants without "cl" measure the plain layout
        task.module = task.module.to(memory_format=torch.contiguous_format)
        task.move = lambda x: x.to(ctx.device)
    if v.oop:
        out_of_place(task.module)
    task.module.joined = v.concat  # one forward of the 3N views (pretrain.joined_views)
    module = task.module
    _, model = wrap_model(module, ctx)
    if v.compile:
        model = torch.compile(model)
    opt, _ = build_optimizer(task.module, cfg, steps_per_epoch=1)
    return task, model, opt, clips


def _batches(clips: Any, batch: int, seed: int, n: int = 2) -> list[tuple[Any, ...]]:
    """``n`` fixed (X, X', lambda) batches drawn like PretrainTask.step does (not timed)."""
    g = torch.Generator().manual_seed(seed)
    pairs = pair_sampler(clips)
    out = []
    for _ in range(n):
        idx = torch.randint(0, clips.n_windows, (batch,), generator=g)
        a, b = pairs(idx, g)
        x, x2 = clips.windows.batch(a.numpy()), clips.windows.batch(b.numpy())
        out.append((x, x2, sample_lambda(batch, alpha=0.5, generator=g)))
    return out


def bench_train(variants: list[Variant], batch: int, steps: int,
                args: argparse.Namespace, cuda: bool, info: dict[str, Any]) -> list[Result]:
    """Warm every variant up, then time ``args.rounds`` interleaved rounds of ``steps`` steps."""
    device = "cuda" if cuda else "cpu"
    runners: list[tuple[Result, Callable[[int], float] | None]] = []
    for v in variants:
        res = Result(v, items_per_block=3 * batch * steps)
        try:
            task, model, opt, clips = _make_task(v, batch, args.seed, device)
            data = _batches(clips, batch, args.seed + 1)
        except Exception as exc:  # noqa: BLE001 -- a failed variant is reported, not fatal
            res.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            runners.append((res, None))
            continue
        model.train()

        def run(n: int, task: Any = task, model: Any = model, opt: Any = opt,
                data: list[tuple[Any, ...]] = data, res: Result = res) -> float:
            t0 = time.perf_counter()
            for i in range(n):
                x, x2, lam = data[i % len(data)]
                terms = task.dgmix_terms(model, x, x2, lam)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                opt.step()
                if res.first_loss is None:
                    res.first_loss = float(terms["loss"].detach())
            sync(cuda)
            return time.perf_counter() - t0

        with VariantSettings(v):
            try:
                res.first_step_s = run(1)
                n_warm = args.warmup + (1 if v.compile else 0) - 1
                if n_warm > 0:
                    run(n_warm)
            except Exception as exc:  # noqa: BLE001
                res.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                runners.append((res, None))
                continue
        print(f"  warm-up {v.name:<22} first step {res.first_step_s:7.2f} s", flush=True)
        runners.append((res, run))

    info["train_rounds"] = run_rounds(runners, steps, args, "train")
    return [res for res, _ in runners]
