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

* ``cl``       channels_last model and inputs (what every training stage uses)
* ``t1``/``t2`` ``torch.set_num_threads(1|2)`` for that variant
* ``ftz``      ``torch.set_flush_denormal(True)`` for that variant (denormals flushed to zero;
  not a config field)
* ``oop``      out-of-place activations: every ``ReLU6``/``ReLU`` of the model gets
  ``inplace=False`` (same maths; in eager autograd an in-place ``hardtanh_`` costs an extra
  clone + copy). A model-code change, not a config field.
* ``cudnnb``   ``torch.backends.cudnn.benchmark = True`` for that variant (CUDA only)
* ``compile``  ``torch.compile`` (default mode) of the branch module (not offered by training,
  BENCHMARKS.md §1); the first step's time is reported as the compile time
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

Code: this file holds the command line and the default variant sets; ``bench_variants.py`` the
variants and the interleaved timing rounds, ``bench_train_step.py`` and ``bench_inference.py``
the two measurements, ``bench_report.py`` the tables and JSON, ``bench_common.py`` the machine
description and quiet-CPU waiting (shared with the other benchmarks).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from bench_common import machine_info
from bench_inference import bench_infer
from bench_report import format_rounds, format_table, header, write_json
from bench_train_step import bench_train
from bench_variants import Variant, with_naive

# torch.compile is opt-in on CPU: a cold compile of this step takes ~4-5 min on 2 cores.
CPU_TRAIN = ("naive", "cl", "t1", "cl+t1", "concat", "cl+concat", "cl+t1+concat")
CPU_INFER = ("naive", "cl", "t1", "cl+t1")
# Compile only with channels_last on CUDA too, to keep a GPU run within a few minutes.
CUDA_TRAIN = ("naive", "cl", "cl+cudnnb", "concat", "cl+compile")
CUDA_TRAIN_AMP = ("amp", "amp+cl", "amp+cl+cudnnb", "amp+cl+concat", "amp+cl+compile")
CUDA_INFER = ("naive", "cl")
CUDA_INFER_AMP = ("amp", "amp+cl")


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
    variants = with_naive([Variant.parse(n) for n in names])
    ivariants = with_naive([Variant.parse(n) for n in inames]) if inames else []
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
    print(header(info), flush=True)

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
    print(format_rounds(info))
    if args.json:
        write_json(args.json, info, train, infer, steps, infer_iters)
        print(f"wrote {args.json}")
    if tmp_cache is not None:
        tmp_cache.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
