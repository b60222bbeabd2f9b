"""The paper preset's pre-training step on a GPU, host path against device-resident path.

Times the *whole* step of :class:`dgmix.training.pretrain.PretrainTask` as the training loop runs
it: drawing the pairs and lambda, gathering X and X' (on the host and copied, or on the device),
mixing, the three views through encoder + expander, the DG-Mix loss, backward and the LARS update.
The batch indices come from a slice of the epoch's order, as in ``run_loop`` (on the device for
the device-resident path, copied there once, outside the timing, as the loop does per epoch).

Data: a DCASE-size machine type held in memory, 3 sections x 1,000 clips of random log-mel-like
frames (128 x 313, 96,000 windows); no audio is read, so the numbers are the step alone.

The ``ft-*`` settings time the fine-tuning step (paper §3.4, :class:`dgmix.training.finetune.FinetuneTask`,
AdamW, batch 64 as the paper preset): 20 fine-tuning epochs of 1,500 such steps can cost as much
as the 100 pre-training epochs of 94 steps each.

CUDA graphs (``cuda_graphs``, both stages, device path, fp32): ``none`` (``device-fp32``,
``ft-device-fp32``), ``forward`` (``device-graphs``, ``ft-device-graphs``: the model's forward and
backward, :mod:`dgmix.training.graphs`) and ``step`` (``device-step``, ``ft-device-step``: the whole
step, :mod:`dgmix.training.step_graph`; its eager warm-up steps and the capture happen in the
setting's warm-up, so the timed steps are replays). Without CUDA the graph settings are not run
and their rows say so ("n/a"): on a CPU ``forward`` does nothing and ``step`` runs eagerly.

Per setting it prints the median step time (each step synchronised), training windows/s
(3 views x batch / step time), the epoch time for 96,000 windows at its batch, and the fraction
of the card's peak that the achieved model FLOP/s represent (FLOPs per window: 3 x 2 x the
encoder's and expander's multiply-adds, forward + backward; peak: ``--peak-tflops``, H100 SXM
dense bf16 989 by default). Every setting runs in the same process, one after the other, and
its row is printed as soon as it is measured. Every setting is channels-last (as training always
is); a stage training on CUDA always keeps its data on the device, so the ``host`` settings force
the host path by patching :func:`dgmix.training.device_data.use_device_data`.

    python benchmarks/bench_gpu.py --json out.json            # on a GPU machine, < 2 minutes
    python benchmarks/bench_gpu.py --device cpu --clips 6 --batch 32 --steps 2 --rounds 1   # dry run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from bench_common import machine_info, sync

from dgmix.config import load_config
from dgmix.features import WindowDataset
from dgmix.models import multiply_adds
from dgmix.optim import param_groups
from dgmix.training import device_data
from dgmix.training.common import wrap_model
from dgmix.training.data import ClipSet
from dgmix.training.distributed import DistContext
from dgmix.training.finetune import FinetuneTask
from dgmix.training.graphs import maybe_graph
from dgmix.training.pretrain import PretrainTask, build_optimizer
from dgmix.training.step_graph import WARMUP_STEPS, StepGraph


@dataclass(frozen=True)
class Setting:
    name: str
    on_device: bool
    amp: bool = False
    stage: str = "pretrain"  # "finetune": FinetuneTask + AdamW at the fine-tuning batch (--ft-batch)
    graphs: str = "none"  # cuda_graphs: "none", "forward" (dgmix.training.graphs), "step" (.step_graph)


SETTINGS = {
    "host-fp32": Setting("host-fp32", False),
    "host-bf16": Setting("host-bf16", False, amp=True),
    "device-fp32": Setting("device-fp32", True),
    "device-bf16": Setting("device-bf16", True, amp=True),
    "device-graphs": Setting("device-graphs", True, graphs="forward"),
    "device-step": Setting("device-step", True, graphs="step"),
    "ft-host-fp32": Setting("ft-host-fp32", False, stage="finetune"),
    "ft-device-fp32": Setting("ft-device-fp32", True, stage="finetune"),
    "ft-device-graphs": Setting("ft-device-graphs", True, stage="finetune", graphs="forward"),
    "ft-device-step": Setting("ft-device-step", True, stage="finetune", graphs="step"),
}
DEFAULT_SETTINGS = ",".join(SETTINGS)


def make_clips(n_clips: int, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    feats = [(rng.standard_normal((128, 313)) * 5.0 - 40.0).astype(np.float32) for _ in range(n_clips)]
    sections = np.arange(n_clips) % 3
    return ClipSet(machine="bench", records=[], features=feats, windows=WindowDataset(feats, labels=sections.tolist()),
                   section_names=["00", "01", "02"], clip_section=sections.astype(np.int64),
                   clip_domain=(np.arange(n_clips) % 100 == 0).astype(np.int64),
                   class_names=["00", "01", "02"], clip_class=sections.astype(np.int64))


def build(s: Setting, clips: ClipSet, batch: int, device: str):
    real = device_data.use_device_data
    device_data.use_device_data = lambda _device: s.on_device  # host or device path, on any device
    try:
        if s.stage == "finetune":
            return build_finetune(s, clips, batch, device)
        return build_pretrain(s, clips, batch, device)
    finally:
        device_data.use_device_data = real


def build_pretrain(s: Setting, clips: ClipSet, batch: int, device: str):
    cfg = load_config("paper", overrides={"pretrain": {"batch_size": batch, "amp": s.amp, "cuda_graphs": s.graphs}})
    ctx = DistContext(device=torch.device(device))
    torch.manual_seed(0)
    task = PretrainTask(clips, cfg, ctx)
    task.module, model = wrap_model(task.module, ctx)
    model = maybe_graph(model, s.graphs == "forward", ctx)
    opt, sched = build_optimizer(task.module, cfg, steps_per_epoch=max(1, clips.n_windows // batch))
    order = torch.randperm(clips.n_windows, generator=torch.Generator().manual_seed(0)).to(task.index_device)
    return task, model, opt, order


def build_finetune(s: Setting, clips: ClipSet, batch: int, device: str):
    """The fine-tuning step (paper §3.4) as ``dgmix.training.finetune.finetune`` builds it (AdamW groups)."""
    cfg = load_config("paper", overrides={"finetune": {"batch_size": batch, "cuda_graphs": s.graphs}})
    ctx = DistContext(device=torch.device(device))
    torch.manual_seed(0)
    task = FinetuneTask(clips, cfg, ctx)
    task.module, model = wrap_model(task.module, ctx)
    model = maybe_graph(model, s.graphs == "forward", ctx)
    opt = torch.optim.AdamW(param_groups(task.module, cfg.finetune.weight_decay), lr=cfg.finetune.lr)
    order = torch.randperm(clips.n_windows, generator=torch.Generator().manual_seed(0)).to(task.index_device)
    return task, model, opt, order


def step_fn(task, model, opt, order, batch: int, gen: torch.Generator, graphs: str = "none"):
    """One training step as run_loop takes it: eager, or with ``graphs == "step"`` through a
    :class:`StepGraph` (at the optimizer's lr)."""
    pos = [0]
    runner = StepGraph(task, model, opt, task.ctx) if graphs == "step" else None

    def step() -> float:
        start = pos[0] % (len(order) - batch)
        pos[0] += batch
        idx = order[start:start + batch]
        if runner is not None:
            return float(runner.step(idx, runner.base_lr, gen)["loss"].detach())
        terms = task.step(model, idx, gen)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return float(terms["loss"].detach())  # waits for the device, as run_loop's float() does

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting and round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="timed blocks of --steps steps")
    ap.add_argument("--ft-batch", type=int, default=64, help="batch of the ft-* (fine-tuning) settings")
    ap.add_argument("--settings", default=DEFAULT_SETTINGS)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak")
    ap.add_argument("--epoch-windows", type=int, default=96_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cuda = args.device == "cuda"
    t0 = time.perf_counter()
    clips = make_clips(args.clips)
    print(f"{clips.n_windows} windows in memory ({time.perf_counter() - t0:.1f} s)", flush=True)
    names = args.settings.split(",")
    built = {}
    failed: dict[str, str] = {}
    skipped = {n: "n/a: cuda_graphs needs CUDA" for n in names if SETTINGS[n].graphs != "none" and not cuda}
    names = [n for n in names if n not in skipped]
    for n in names:
        t1 = time.perf_counter()
        try:
            b = args.ft_batch if SETTINGS[n].stage == "finetune" else args.batch
            built[n] = (*build(SETTINGS[n], clips, b, args.device), b)
        except Exception as exc:  # e.g. out of memory: record it, keep the others
            failed[n] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"{n} failed to build: {failed[n]}", flush=True)
            continue
        sync(cuda)
        print(f"built {n} in {time.perf_counter() - t1:.1f} s", flush=True)
    wanted, names = names, [n for n in names if n in built]
    macs = {n: window_macs(built[n][0].module) for n in names}
    print(f"batch {args.batch} (pre-training), {args.ft_batch} (fine-tuning); {args.warmup} warm-up + "
          f"{args.steps} x {args.rounds} timed steps per setting; multiply-adds per window (encoder + "
          f"expander or classifier): " + ", ".join(sorted({f"{m / 1e6:.1f} M" for m in macs.values()})), flush=True)
    print("| setting | step (ms) | train windows/s | epoch of 96k windows (s) | model TFLOP/s | % of peak "
          "| windows/s vs first |")
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for n, why in skipped.items():
        print(f"| {n} | {why} | | | | | |", flush=True)
    rows = []
    # one setting after the other, each row printed as soon as it is measured, so a time limit
    # costs only the settings not reached yet
    for n in names:
        *parts, batch = built[n]
        graphs = SETTINGS[n].graphs
        step = step_fn(*parts, batch, torch.Generator().manual_seed(1), graphs)
        # a step graph takes WARMUP_STEPS eager steps, then its capture: all before the timing
        warmup = max(1, args.warmup, WARMUP_STEPS + 1 if graphs == "step" else 1)
        try:
            warm = [step() for _ in range(warmup)]  # same init and draws per stage: parity
            first = warm[0]
        except Exception as exc:
            failed[n] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"| {n} | failed in warm-up: {failed[n]} | | | | | |", flush=True)
            continue
        times = []
        for _ in range(args.rounds * args.steps):
            sync(cuda)
            t1 = time.perf_counter()
            step()
            sync(cuda)
            times.append(time.perf_counter() - t1)
        med = statistics.median(times)
        wps = 3 * batch / med
        tflops = 3 * 2 * macs[n] * wps / 1e12  # forward (1x) + backward (2x), multiply-add = 2 FLOPs
        task = built[n][0]
        row = {"setting": n, "batch": batch, "median_step_s": med, "train_windows_per_s": wps,
               "epoch_s": med * (args.epoch_windows // batch), "model_tflops": tflops,
               "peak_fraction": tflops / args.peak_tflops, "first_loss": first, "warmup_losses": warm,
               "speedup_vs_first": wps / rows[0]["train_windows_per_s"] if rows else 1.0,
               "device_data_mb": task.resident.nbytes / 1e6 if task.resident is not None else 0.0}
        rows.append(row)
        print(f"| {n} | {1e3 * med:.1f} | {wps:,.0f} | {row['epoch_s']:.1f} | {tflops:.2f} | "
              f"{100 * row['peak_fraction']:.2f} | {row['speedup_vs_first']:.2f}x |", flush=True)
    print("\nwarm-up losses (same initial weights and draws within a stage, so equal paths give equal "
          "values up to float rounding):")
    for r in rows:
        print(f"  {r['setting']}: " + ", ".join(f"{v:.6f}" for v in r["warmup_losses"]))
    for n in wanted:
        if n not in built and n not in skipped:
            print(f"| {n} | failed to build: {failed[n]} | | | | | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(args.device), "args": vars(args), "rows": rows,
                       "failed": failed, "skipped": skipped, "macs_per_window": macs}, f, indent=1)


def window_macs(module: torch.nn.Module) -> int:
    """Multiply-adds per window: the encoder's, plus the expander's or the classifier's linear layers."""
    head = getattr(module, "expander", None) or getattr(module, "classifier", None)
    linear = sum(m.in_features * m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear))
    return multiply_adds(module.encoder) + linear


if __name__ == "__main__":
    main()
