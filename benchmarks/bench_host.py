"""Host-side cost of one training batch: window gathering and mixup, per batch of N windows.

At the paper's batch (1024) on a GPU these run on the CPU before every step (the window gather)
or could (the mix). The script times, in the same run:

* ``gather``: ``WindowDataset.batch`` of N random windows out of a DCASE-sized machine type
  (``--clips`` 10-s clips of 313 frames, 128 mels);
* ``mix-reference``: X_lambda = lam * X + (1 - lam) * X' written as three tensor operations
  (what ``dgmix.augment.mix`` did before it used ``torch.lerp``);
* ``mix-lerp``: ``dgmix.augment.mix`` as it is (``torch.lerp``), reported as a ratio to the
  reference and checked to agree with it to float rounding.

    python benchmarks/bench_host.py [--batch 1024] [--clips 3000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from dgmix.augment import mix, sample_lambda
from dgmix.features import WindowDataset


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    feats = [rng.standard_normal((128, 313)).astype(np.float32) for _ in range(args.clips)]
    ds = WindowDataset(feats)
    idx = rng.integers(0, len(ds), args.batch)
    idx2 = rng.integers(0, len(ds), args.batch)
    x, x2 = ds.batch(idx), ds.batch(idx2)
    g = torch.Generator().manual_seed(args.seed)
    lam = sample_lambda(args.batch, alpha=0.5, generator=g)
    lam_b = lam.view(-1, 1, 1, 1)

    def reference() -> torch.Tensor:
        return lam_b * x + (1 - lam_b) * x2

    diff = float((reference() - mix(x, x2, lam)).abs().max())
    t_gather = _median_ms(lambda: ds.batch(idx), args.repeats)
    t_ref = _median_ms(reference, args.repeats)
    t_lerp = _median_ms(lambda: mix(x, x2, lam), args.repeats)

    print(f"host-side batch costs  {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}")
    print(f"batch {args.batch} windows of 128x64 from {args.clips} clips ({len(ds)} windows); "
          f"median of {args.repeats}")
    print("| operation | ms per batch | vs mix-reference |")
    print("|---|---:|---:|")
    print(f"| gather (WindowDataset.batch) | {t_gather:.1f} | |")
    print(f"| mix-reference (3 ops) | {t_ref:.1f} | 1.00x |")
    print(f"| mix-lerp (dgmix.augment.mix) | {t_lerp:.1f} | {t_ref / t_lerp:.2f}x |")
    print(f"max |lerp - reference| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
