"""Speed benchmark of one DG-Mix pre-training step (paper §3.3, eq. 5) and of encoder inference.

What is timed (training): one step of the real training code,
:meth:`dgmix.training.pretrain.PretrainTask.dgmix_terms` (mix X and X' into X_lambda, forward
the three views through the weight-sharing encoder + expander, DG-Mix loss), then
``zero_grad``, ``backward`` and a :class:`dgmix.optim.LARS` step -- the same order as
:func:`dgmix.training.loop.run_loop`. Window gathering from the feature cache is not timed (the
batches are drawn once, before timing, from a real :class:`dgmix.training.data.ClipSet` of random
log-mel-like features).

Counting: ``windows/s = 3 * batch / step time`` -- every step pushes the three views X, X' and
X_lambda (``batch`` windows each) through forward and backward.

Variants are named by ``+``-joined tokens on top of the naive reference
(fp32, NCHW/contiguous, torch's default thread count, eager, three separate forwards):

* ``cl``       channels_last model and inputs (``PretrainConfig.channels_last``)
* ``t1``/``t2`` ``torch.set_num_threads(1|2)`` for that variant (``PretrainConfig.threads``)
* ``ftz``      ``torch.set_flush_denormal(True)`` for that variant (denormals flushed to zero;
  not a config field)
* ``oop``      out-of-place activations: every ``ReLU6``/``ReLU`` of the model gets
  ``inplace=False`` (same maths; in eager autograd an in-place ``hardtanh_`` costs an extra
  clone + copy). A model-code change, not a config field.
* ``cudnnb``   ``torch.backends.cudnn.benchmark = True`` for that variant (CUDA only)
* ``compile``  ``torch.compile`` (default mode) of the branch module, as ``wrap_model`` does
  (``PretrainConfig.compile``); the first step's time is reported as the compile time
* ``concat``   ONE forward of ``cat([X, X', X_lambda])`` (3N windows) instead of three forwards
  of N. This CHANGES SEMANTICS: batch norm then normalises over 3N windows instead of over N
  per branch, so the loss and gradients differ. Reported, never a recommendation by itself.
* ``amp``      bf16 autocast (CUDA only, ``PretrainConfig.amp``)

All variants are measured in the same process, interleaved round by round (round r times every
variant once), so slow phases of a shared machine hit all of them alike; each variant's number
is the median over rounds, and its ratio is against the naive step of the same run.

Inference: the encoder alone in eval mode under ``torch.inference_mode`` on ``--infer-batch``
windows (scoring embeds every window of every clip with batches of 512), naive vs channels_last
(and the thread settings).

Usage (see benchmarks/README.md)::

    python benchmarks/bench_pretrain.py                      # CPU, batch 64, ~3 min on 2 cores
    python benchmarks/bench_pretrain.py --json bench.json
    python benchmarks/bench_pretrain.py --device cuda --amp --batch 1024
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dgmix.augment import sample_lambda
from dgmix.config import load_config
from dgmix.features import WindowDataset
from dgmix.models import Encoder
from dgmix.training.common import wrap_model
from dgmix.training.data import ClipSet
from dgmix.training.distributed import DistContext
from dgmix.training.pretrain import PretrainTask, build_optimizer, draw_partners

TOKENS = ("cl", "t1", "t2", "ftz", "oop", "cudnnb", "compile", "concat", "amp")
# torch.compile is opt-in on CPU: a cold compile of this step takes ~4-5 min on 2 cores.
CPU_TRAIN = ("naive", "cl", "t1", "cl+t1", "concat", "cl+concat", "cl+t1+concat")
CPU_INFER = ("naive", "cl", "t1", "cl+t1")
# Compile only with channels_last on CUDA too, to keep a GPU run within a few minutes.
CUDA_TRAIN = ("naive", "cl", "cl+cudnnb", "concat", "cl+compile")
CUDA_TRAIN_AMP = ("amp", "amp+cl", "amp+cl+cudnnb", "amp+cl+concat", "amp+cl+compile")
CUDA_INFER = ("naive", "cl")
CUDA_INFER_AMP = ("amp", "amp+cl")


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


# --------------------------------------------------------------------------- machine / context


def cpu_model() -> str:
    """The ``Model name`` line of ``lscpu`` (falls back to ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def machine_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "default_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------- the benchmark


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None,
                   help="windows per view per step (default 64 on CPU, 1024 on CUDA)")
    p.add_argument("--amp", action="store_true",
                   help="CUDA: also measure bf16 autocast variants")
    p.add_argument("--variants", default=None,
                   help="comma-separated training variants (default: a device-specific set); "
                        "'naive' is always added first")
    p.add_argument("--infer-variants", default=None,
                   help="comma-separated inference variants; '' skips the inference benchmark")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (median over rounds)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per round and variant (default 1 on CPU, 10 on CUDA)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed steps per variant before the rounds (compile variants get "
                        "one more: the first step compiles)")
    p.add_argument("--infer-batch", type=int, default=512,
                   help="windows per inference batch (scoring uses 512)")
    p.add_argument("--infer-iters", type=int, default=None,
                   help="inference batches per round (default 1 on CPU, 20 on CUDA)")
    p.add_argument("--interop-threads", type=int, default=None,
                   help="torch.set_num_interop_threads before any work (default: torch's)")
    p.add_argument("--compile-cache", choices=("fresh", "default"), default="fresh",
                   help="'fresh': compile into an empty temporary inductor cache, so the reported "
                        "compile time is a cold one; 'default': reuse the user's cache")
    p.add_argument("--max-other-busy", type=float, default=0.25,
                   help="discard and repeat a round when other processes used more than this "
                        "share of all CPUs during it (Linux /proc/stat); negative = never")
    p.add_argument("--max-retries", type=int, default=6,
                   help="at most this many discarded rounds per benchmark (then noisy rounds "
                        "are kept and flagged)")
    p.add_argument("--wait-s", type=float, default=None,
                   help="before each round, wait (at most this many seconds per benchmark in "
                        "all) until other processes leave the CPUs below --max-other-busy "
                        "(default 300 on CPU, 0 on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tmp_cache = None
    if args.compile_cache == "fresh":
        # Read by inductor when it first needs its cache (the first torch.compile).
        tmp_cache = tempfile.TemporaryDirectory(prefix="dgmix_bench_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp_cache.name

    if args.interop_threads is not None:
        torch.set_num_interop_threads(args.interop_threads)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available in this torch build / machine")
    batch = args.batch or (1024 if cuda else 64)
    if args.wait_s is None:
        args.wait_s = 0.0 if cuda else 300.0
    steps = args.steps or (10 if cuda else 1)
    infer_iters = args.infer_iters or (20 if cuda else 1)
    if batch < 2:
        raise SystemExit("--batch must be >= 2 (the variance term needs two windows)")

    if args.variants is None:
        names = list(CUDA_TRAIN + (CUDA_TRAIN_AMP if args.amp else ())) if cuda else list(CPU_TRAIN)
    else:
        names = [n for n in args.variants.split(",") if n.strip()]
    if args.infer_variants is None:
        inames = list(CUDA_INFER + (CUDA_INFER_AMP if args.amp else ())) if cuda else list(CPU_INFER)
    else:
        inames = [n for n in args.infer_variants.split(",") if n.strip()]
    variants = _with_naive([Variant.parse(n) for n in names])
    ivariants = _with_naive([Variant.parse(n) for n in inames]) if inames else []
    for v in variants + ivariants:
        if v.amp and not cuda:
            raise SystemExit(f"variant {v.name!r}: amp is CUDA-only (PretrainConfig.amp)")
        if (v.threads or v.ftz) and cuda:
            raise SystemExit(f"variant {v.name!r}: t1/t2/ftz are for --device cpu")
        if v.cudnnb and not cuda:
            raise SystemExit(f"variant {v.name!r}: cudnnb is for --device cuda")

    load0 = os.getloadavg()
    info = machine_info(args.device)
    info.update(device=args.device, batch=batch, steps_per_round=steps, rounds=args.rounds,
                warmup=args.warmup, loadavg_start=[round(x, 2) for x in load0],
                infer_batch=args.infer_batch, infer_iters=infer_iters,
                compile_cache=args.compile_cache)
    print(_header(info), flush=True)

    train = bench_train(variants, batch, steps, args, cuda, info)
    infer = (bench_infer(ivariants, args.infer_batch, infer_iters, args, cuda, info)
             if ivariants else [])
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    print(format_table("Training step (forward of 3 views + loss + backward + LARS)", train,
                       "windows/s", per_step=steps))
    if infer:
        print()
        print(format_table("Encoder inference (eval, torch.inference_mode)", infer, "windows/s",
                           per_step=infer_iters))
    print(f"\nload average: start {info['loadavg_start']}, end {info['loadavg_end']} "
          f"({info['cpu_count']} CPUs)")
    for key in ("train_rounds", "infer_rounds"):
        rounds = info.get(key, [])
        busy = [r["other_busy"] for r in rounds if r["kept"] and r["other_busy"] is not None]
        print(f"{key.replace('_', ' ')}: {sum(r['kept'] for r in rounds)} kept, "
              f"{sum(not r['kept'] for r in rounds)} discarded as busy, "
              f"{sum(r['kept'] and r['noisy'] for r in rounds)} kept although busy; "
              f"other processes' CPU share in kept rounds: "
              + (", ".join(f"{100 * b:.0f}%" for b in busy) or "n/a"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "info": info,
            "train": [_result_dict(r, train[0], steps) for r in train],
            "inference": [_result_dict(r, infer[0], infer_iters) for r in infer],
        }, indent=2))
        print(f"wrote {args.json}")
    if tmp_cache is not None:
        tmp_cache.cleanup()
    return 0


def _with_naive(variants: list[Variant]) -> list[Variant]:
    rest = [v for v in variants if v.name != "naive"]
    return [Variant("naive"), *rest]


def _header(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    return (f"dgmix pre-training benchmark  {info['date']}\n"
            f"CPU {info['cpu_model']} ({info['cpu_count']} CPUs){gpu}; torch {info['torch']}, "
            f"default threads {info['default_threads']}, interop threads "
            f"{info['interop_threads']}\n"
            f"device {info['device']}, batch {info['batch']} (x3 views), "
            f"{info['rounds']} rounds x {info['steps_per_round']} step(s), warm-up "
            f"{info['warmup']}; load average {info['loadavg_start']}")


def _make_task(v: Variant, batch: int, seed: int, device: str) -> tuple[Any, ...]:
    """A real PretrainTask + its wrapped model + LARS for variant ``v``, seeded identically."""
    cfg = load_config("cpu", overrides={"pretrain": {
        "batch_size": batch, "channels_last": v.channels_last, "compile": v.compile,
        "threads": v.threads, "amp": v.amp, "warmup_epochs": 0,
    }})
    # A real ClipSet of random log-mel-like features: 8 clips of 313 frames (10 s at hop 512).
    rng = np.random.default_rng(seed)
    feats = [(rng.standard_normal((128, 313)) * 5.0 - 20.0).astype(np.float32) for _ in range(8)]
    clips = ClipSet(machine="bench", records=[], features=feats, windows=WindowDataset(feats),
                    section_names=["00"], clip_section=np.zeros(8, dtype=np.int64),
                    clip_domain=np.zeros(8, dtype=np.int64))
    ctx = DistContext(device=torch.device(device))
    torch.manual_seed(seed)
    task = PretrainTask(clips, cfg, ctx)
    if v.oop:
        out_of_place(task.module)
    module = ConcatBranches(task.module) if v.concat else task.module
    _, model = wrap_model(module, ctx, v.compile)
    opt, _ = build_optimizer(task.module, cfg, steps_per_epoch=1)
    return task, model, opt, clips


def _batches(clips: Any, batch: int, seed: int, n: int = 2) -> list[tuple[Any, ...]]:
    """``n`` fixed (X, X', lambda) batches drawn like PretrainTask.step does (not timed)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randint(0, clips.n_windows, (batch,), generator=g)
        x = clips.windows.batch(idx.numpy())
        x2 = clips.windows.batch(draw_partners(idx, clips.n_windows, g).numpy())
        out.append((x, x2, sample_lambda(batch, alpha=0.5, generator=g)))
    return out


def out_of_place(module: nn.Module) -> nn.Module:
    """Set ``inplace=False`` on every ReLU/ReLU6 of ``module`` (the ``oop`` variant)."""
    for m in module.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False
    return module


class ConcatBranches(nn.Module):
    """``concat`` variant: one encoder + expander forward of the 3N views, split back into 3.

    Changes semantics: batch norm normalises over the 3N windows, not over N per branch.
    """

    def __init__(self, branches: nn.Module) -> None:
        super().__init__()
        self.inner = branches

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = views[0].shape[0]
        z = self.inner.expander(self.inner.encoder(torch.cat(views, dim=0)))
        return tuple(z.split(n, dim=0))


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


class _Threads:
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
            _sync(cuda)
            return time.perf_counter() - t0

        with _Threads(v):
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


def _cpu_busy_sample() -> tuple[float, float, float] | None:
    """(wall s, busy CPU-seconds of the whole machine, CPU-seconds of this process) or None.

    The machine's busy time comes from ``/proc/stat`` (Linux); elsewhere returns None.
    """
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    t = os.times()
    return time.perf_counter(), (sum(vals[:8]) - idle) / tick, t.user + t.system


def other_busy(a: tuple[float, float, float] | None,
               b: tuple[float, float, float] | None) -> float | None:
    """Share of all CPUs used by OTHER processes between two samples (0 = they were idle)."""
    if a is None or b is None or b[0] <= a[0]:
        return None
    ncpu = os.cpu_count() or 1
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / ((b[0] - a[0]) * ncpu))


def wait_until_quiet(max_other_busy: float, budget_s: float, probe_s: float = 2.0) -> float:
    """Sleep until other processes use at most ``max_other_busy`` of the CPUs (measured over
    ``probe_s``) or ``budget_s`` has passed; returns the seconds spent."""
    t0 = time.perf_counter()
    if max_other_busy < 0 or budget_s <= 0:
        return 0.0
    while True:
        a = _cpu_busy_sample()
        time.sleep(probe_s)
        busy = other_busy(a, _cpu_busy_sample())
        spent = time.perf_counter() - t0
        if busy is None or busy <= max_other_busy or spent >= budget_s:
            return spent
        time.sleep(min(3.0, max(0.0, budget_s - spent)))


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
        s0 = _cpu_busy_sample()
        times = []
        for res, run in runners:
            if run is None:
                times.append(None)
                continue
            with _Threads(res.variant):
                times.append(run(n))
        busy = other_busy(s0, _cpu_busy_sample())
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


def calibrated_encoder(x: torch.Tensor) -> Encoder:
    """A fresh encoder whose BN running statistics are those of ``x`` (one train-mode pass).

    With the initial running statistics (mean 0, variance 1) an untrained encoder in eval mode
    shrinks its activations by ~1e-7 over the rows; calibrated statistics keep them O(1), as in
    a trained model.
    """
    enc = Encoder()
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
            _sync(cuda)
            return time.perf_counter() - t0

        with _Threads(v):
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


# --------------------------------------------------------------------------- output


def _result_dict(r: Result, ref: Result, per_block: int) -> dict[str, Any]:
    d: dict[str, Any] = {
        "variant": r.variant.name, "channels_last": r.variant.channels_last,
        "threads": r.variant.threads, "ftz": r.variant.ftz,
        "oop": r.variant.oop,
        "cudnn_benchmark": r.variant.cudnnb, "compile": r.variant.compile, "concat": r.variant.concat,
        "amp": r.variant.amp, "changes_semantics": r.variant.changes_semantics,
        "error": r.error, "first_step_s": r.first_step_s, "first_value": r.first_loss,
    }
    if r.times:
        d.update(times_s=r.times, median_s_per_step=r.median_s / per_block,
                 windows_per_s=r.rate)
        if ref.times:
            d["speedup_vs_naive"] = r.rate / ref.rate
            d["round_speedups"] = [a / b for a, b in zip(ref.times, r.times)]
    return d


def format_table(title: str, results: list[Result], unit: str, per_step: int) -> str:
    """Markdown table: variant, windows/s, s/step, ratio vs naive, spread, first-step, value."""
    ref = results[0]
    lines = [f"### {title}", "",
             f"| variant | {unit} | s/step | vs naive | per-round ratios | first step s "
             "| first loss/value | note |",
             "|---|---:|---:|---:|---|---:|---:|---|"]
    for r in results:
        note = "CHANGES SEMANTICS (BN over 3N)" if r.variant.changes_semantics else ""
        if r.error or not r.times:
            lines.append(f"| {r.variant.name} | failed | | | | | | {r.error} |")
            continue
        if r.variant.compile and r.first_step_s is not None:
            note = (note + "; " if note else "") + f"compile ~{r.first_step_s - r.median_s / per_step:.0f} s"
        ratio = r.rate / ref.rate if ref.times else float("nan")
        rounds = ", ".join(f"{a / b:.2f}" for a, b in zip(ref.times, r.times))
        first = f"{r.first_loss:.5g}" if r.first_loss is not None else ""
        lines.append(f"| {r.variant.name} | {r.rate:.1f} | {r.median_s / per_step:.3f} "
                     f"| {ratio:.2f}x | {rounds} | {r.first_step_s:.2f} | {first} | {note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
