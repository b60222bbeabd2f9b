"""Benchmark variants of bench_pretrain.py and the interleaved timing rounds that measure them.

A :class:`Variant` is parsed from ``+``-joined tokens (see bench_pretrain.py's docstring);
:class:`VariantSettings` applies its process-wide settings, :func:`out_of_place` and
:class:`ConcatBranches` its model changes. :func:`run_rounds` times every variant once per round,
round by round, and discards rounds during which other processes kept the CPUs busy.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from bench_common import cpu_busy_sample, other_busy, wait_until_quiet
from torch import nn

__all__ = ["TOKENS", "Result", "Variant", "VariantSettings", "out_of_place",
           "run_rounds", "with_naive"]

TOKENS = ("cl", "t1", "t2", "ftz", "oop", "cudnnb", "compile", "concat", "amp")


@dataclass(frozen=True)
class Variant:
    """One benchmarked setting, parsed from a name such as ``cl+t1+compile``."""

    name: str
    channels_last: bool = False
    threads: int | None = None
    ftz: bool = False
    oop: bool = False
    cudnnb: bool = False
    compile: bool = False
    concat: bool = False
    amp: bool = False

    @property
    def changes_semantics(self) -> bool:
        """True when the step no longer computes the paper's loss (``concat``: BN over 3N)."""
        return self.concat

    @classmethod
    def parse(cls, name: str) -> Variant:
        name = name.strip()
        if name == "naive":
            return cls(name)
        toks = name.split("+")
        bad = [t for t in toks if t not in TOKENS]
        if bad or len(set(toks)) != len(toks):
            raise SystemExit(f"--variants: bad variant {name!r}; use 'naive' or '+'-joined "
                             f"tokens from {', '.join(TOKENS)}")
        threads = 1 if "t1" in toks else (2 if "t2" in toks else None)
        if "t1" in toks and "t2" in toks:
            raise SystemExit(f"--variants: {name!r} sets two thread counts")
        return cls(name, channels_last="cl" in toks, threads=threads, ftz="ftz" in toks, oop="oop" in toks,
                   cudnnb="cudnnb" in toks,
                   compile="compile" in toks, concat="concat" in toks, amp="amp" in toks)


@dataclass
class Result:
    """Timings of one variant: seconds per timed block (``steps`` steps each)."""

    variant: Variant
    items_per_block: int
    times: list[float] = field(default_factory=list)
    first_step_s: float | None = None
    first_loss: float | None = None
    error: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        return self.items_per_block / self.median_s


def with_naive(variants: list[Variant]) -> list[Variant]:
    """``variants`` with the naive reference first (and only once)."""
    rest = [v for v in variants if v.name != "naive"]
    return [Variant("naive"), *rest]


def out_of_place(module: nn.Module) -> nn.Module:
    """Set ``inplace=False`` on every ReLU/ReLU6 of ``module`` (the ``oop`` variant)."""
    for m in module.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False
    return module


class VariantSettings:
    """Set a variant's global settings (threads, flush-denormal, cudnn.benchmark), then restore."""

    def __init__(self, v: Variant) -> None:
        self.n, self.ftz, self.cudnnb, self.prev = v.threads, v.ftz, v.cudnnb, None

    def __enter__(self) -> None:
        if self.n:
            self.prev = torch.get_num_threads()
            torch.set_num_threads(self.n)
        if self.ftz:
            torch.set_flush_denormal(True)
        if self.cudnnb:
            torch.backends.cudnn.benchmark = True

    def __exit__(self, *exc: object) -> None:
        if self.prev is not None:
            torch.set_num_threads(self.prev)
        if self.ftz:
            torch.set_flush_denormal(False)
        if self.cudnnb:
            torch.backends.cudnn.benchmark = False



def run_rounds(runners: list[tuple[Result, Callable[[int], float] | None]], n: int,
               args: argparse.Namespace, label: str) -> list[dict[str, Any]]:
    """Time ``args.rounds`` interleaved rounds (every variant once per round).

    Before each round it waits (within ``args.wait_s`` in all) for the other processes to go
    quiet; a round during which they kept more than ``args.max_other_busy`` of the CPUs busy
    is discarded and repeated (at most ``args.max_retries`` times per benchmark), so the
    numbers describe this step, not the neighbours; the kept and discarded rounds are reported.
    """
    log: list[dict[str, Any]] = []
    kept = retries = 0
    wait_left = args.wait_s
    while kept < args.rounds:
        wait_left -= wait_until_quiet(args.max_other_busy, wait_left)
        s0 = cpu_busy_sample()
        times = []
        for res, run in runners:
            if run is None:
                times.append(None)
                continue
            with VariantSettings(res.variant):
                times.append(run(n))
        busy = other_busy(s0, cpu_busy_sample())
        noisy = busy is not None and 0 <= args.max_other_busy < busy
        keep = not noisy or retries >= args.max_retries
        if noisy and not keep:
            retries += 1
        if keep:
            kept += 1
            for (res, _), t in zip(runners, times):
                if t is not None:
                    res.times.append(t)
        log.append({"other_busy": None if busy is None else round(busy, 3), "kept": keep,
                    "noisy": noisy})
        shown = "n/a" if busy is None else f"{100 * busy:.0f}%"
        verdict = "kept" if keep else "discarded, repeating"
        print(f"  {label} round: other processes used {shown} of the CPUs -> {verdict} "
              f"({kept}/{args.rounds})", flush=True)
    return log
