"""The inference measurement of bench_pretrain.py: the encoder alone, as scoring runs it.

The encoder in eval mode under ``torch.inference_mode`` on ``--infer-batch`` windows (scoring
embeds every window of every clip with batches of 512); the host->device copy and the layout
change of each batch are timed with it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from bench_common import sync
from bench_variants import Result, Variant, VariantSettings, out_of_place, run_rounds
from torch import nn

from dgmix.config import ModelConfig
from dgmix.features import FeatureParams
from dgmix.models import Encoder, build_encoder

__all__ = ["bench_infer", "calibrated_encoder"]


def calibrated_encoder(x: torch.Tensor) -> Encoder:
    """A fresh encoder whose BN running statistics are those of ``x`` (one train-mode pass).

    With the initial running statistics (mean 0, variance 1) an untrained encoder in eval mode
    shrinks its activations by ~1e-7 over the rows; calibrated statistics keep them O(1), as in
    a trained model.
    """
    enc = build_encoder(ModelConfig(), FeatureParams())  # Table 1: 128 x 64 windows
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # cumulative average: after one pass, running stats = batch stats
    with torch.no_grad():
        enc.train()(x)
    for m in bns:
        m.momentum = 0.1
    return enc


def bench_infer(variants: list[Variant], batch: int, iters: int,
                args: argparse.Namespace, cuda: bool, info: dict[str, Any]) -> list[Result]:
    """Encoder forward (eval mode, inference_mode) on ``batch`` windows, ``iters`` per round."""
    device = torch.device("cuda" if cuda else "cpu")
    g = torch.Generator().manual_seed(args.seed)
    x_cpu = torch.randn(batch, 1, 128, 64, generator=g)
    runners: list[tuple[Result, Callable[[int], float] | None]] = []
    for v in variants:
        res = Result(v, items_per_block=batch * iters)
        try:
            torch.manual_seed(args.seed)
            enc = calibrated_encoder(x_cpu[:64]).to(device).eval()
            if v.oop:
                out_of_place(enc)
            fmt = torch.channels_last if v.channels_last else torch.contiguous_format
            enc = enc.to(memory_format=fmt)
            fn = torch.compile(enc) if v.compile else enc
        except Exception as exc:  # noqa: BLE001
            res.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            runners.append((res, None))
            continue

        def run(n: int, fn: Any = fn, fmt: Any = fmt, v: Variant = v, res: Result = res) -> float:
            t0 = time.perf_counter()
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                        enabled=v.amp):
                for _ in range(n):
                    # The host->device copy and layout change are part of embedding a batch.
                    y = fn(x_cpu.to(device, non_blocking=True).contiguous(memory_format=fmt))
                    if res.first_loss is None:
                        res.first_loss = float(y.float().abs().mean())
            sync(cuda)
            return time.perf_counter() - t0

        with VariantSettings(v):
            try:
                res.first_step_s = run(1)
                if v.compile or cuda:
                    run(2)
            except Exception as exc:  # noqa: BLE001
                res.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                runners.append((res, None))
                continue
        runners.append((res, run))
    info["infer_rounds"] = run_rounds(runners, iters, args, "inference")
    return [res for res, _ in runners]
