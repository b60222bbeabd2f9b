"""Issue 11 item 5: latency of scoring one 10-s clip, WAV bytes to anomaly score, on the CPU.

What ``dgmix score`` does per clip: read and decode the WAV, log-mel (the package's torch front
end), cut the 32 windows, embed them with the encoder, pool, 1-NN distance to the bank. Each
variant is timed on the same clip and the same trained dgmix bundle, interleaved round by round,
and its score is compared with the reference's:

* ``reference``: the bundle as loaded, the code path of ``dgmix score`` before issue 11;
* ``fold``: BatchNorm folded into the convolutions (:func:`dgmix.models.fold.fold_batchnorm`);
* ``fold+cl``: the folded encoder in channels-last layout;
* ``fold+cl+t1``: the same on one thread (``torch.set_num_threads(1)``);
* ``fold+cl+bf16``: bf16 autocast on the CPU (where the CPU has bf16 instructions);
* ``dgmix score (bundle)``: what ``DetectorBundle.score_features`` runs since issue 11 (fold+cl).

Also the parts of the reference, alone: decode + log-mel, encoder, k-NN. ONNX Runtime is not
measured here (not a dependency; a one-off check: 21 ms for the folded encoder's 32 windows on
2 threads, BENCHMARKS.md §4). Without ``--bundle`` a
dgmix detector is trained first on a small synthetic valve set with the ``cpu`` preset (~1 min).

    python benchmarks/bench_latency.py --json latency.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import machine_info
from torch import nn

from dgmix.models.fold import fold_batchnorm
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.embed import encoder_windows


def make_bundle(work: Path) -> tuple[Path, Path]:
    """Train a dgmix detector on a small synthetic valve set; returns (bundle, a 10-s test clip)."""
    from dgmix.config import load_config
    from dgmix.pipeline import run_pipeline
    from dgmix.synth import SynthConfig, generate

    generate(work / "data", SynthConfig(machines=("valve",), sections=("00",), train_source=10, train_target=2,
                                        test_per_group=1), workers=1, progress=False)
    root = work / "data" / "dev_data"
    run_pipeline(root, work / "run", load_config("cpu"), methods=["dgmix"], progress=False, echo=lambda s: None)
    clip = sorted((root / "valve" / "test").glob("*.wav"))[0]
    return work / "run" / "dgmix" / "valve" / "detector.pt", clip


def variant(bundle: DetectorBundle, fold: bool, channels_last: bool) -> nn.Module:
    """The encoder of one variant (the bundle's own plain weights underneath)."""
    enc = fold_batchnorm(bundle.encoder) if fold else copy.deepcopy(bundle.encoder).eval()
    return enc.to(memory_format=torch.channels_last) if channels_last else enc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--clip", default=None)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle is None:
            t0 = time.perf_counter()
            bundle_path, clip = make_bundle(Path(tmp))
            print(f"trained a dgmix bundle in {time.perf_counter() - t0:.0f} s", flush=True)
        else:
            bundle_path, clip = Path(args.bundle), Path(args.clip)
        base = DetectorBundle.load(bundle_path)
        section = base.section_names[0]
        bf16 = "bf16" in open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else False
        # (encoder or None for the bundle's own path, threads, bf16 autocast)
        variants: dict[str, tuple[nn.Module | None, int, bool]] = {
            "reference": (variant(base, False, False), 2, False),
            "fold": (variant(base, True, False), 2, False),
            "fold+cl": (variant(base, True, True), 2, False),
            "fold+cl+t1": (variant(base, True, True), 1, False),
            "dgmix score (bundle)": (None, 2, False),
        }
        if bf16:
            variants["fold+cl+bf16"] = (variant(base, True, True), 2, True)
        idx = base.section_index([section])

        def score(enc: nn.Module | None, threads: int, autocast: bool) -> float:
            torch.set_num_threads(threads)
            feat = base.features_of(clip)
            if enc is None:
                return float(base.score_features([feat], [section])[0])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                emb = encoder_windows(enc, [feat], base.params.frames, base.params.window_hop)
            return float(base.scorer.score([e.float() for e in emb], idx)[0])

        times: dict[str, list[float]] = {n: [] for n in variants}
        scores = {n: score(*v) for n, v in variants.items()}  # warm-up + the score to compare
        parts: dict[str, list[float]] = {"decode+logmel": [], "encoder": [], "knn": []}
        feat = base.features_of(clip)
        for _ in range(args.rounds):
            for n, v in variants.items():
                t0 = time.perf_counter()
                score(*v)
                times[n].append(time.perf_counter() - t0)
            torch.set_num_threads(2)
            t0 = time.perf_counter()
            base.features_of(clip)
            t1 = time.perf_counter()
            emb = encoder_windows(variants["reference"][0], [feat], base.params.frames, base.params.window_hop)
            t2 = time.perf_counter()
            base.scorer.score(emb, idx)
            t3 = time.perf_counter()
            parts["decode+logmel"].append(t1 - t0)
            parts["encoder"].append(t2 - t1)
            parts["knn"].append(t3 - t2)
    ref = statistics.median(times["reference"])
    print(f"\none 10-s clip ({clip.name}), {args.rounds} rounds, median ms; "
          f"{torch.get_num_threads()} threads unless t1")
    print("| variant | median (ms) | p90 (ms) | vs reference | score - reference score |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for n in variants:
        med = statistics.median(times[n])
        p90 = float(np.percentile(times[n], 90))
        rows.append({"variant": n, "median_ms": 1e3 * med, "p90_ms": 1e3 * p90, "speedup": ref / med,
                     "score_diff": scores[n] - scores["reference"]})
        print(f"| {n} | {1e3 * med:.2f} | {1e3 * p90:.2f} | {ref / med:.2f}x | {scores[n] - scores['reference']:.2e} |")
    print("\nparts of the reference (median ms): " + ", ".join(
        f"{k} {1e3 * statistics.median(v):.2f}" for k, v in parts.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info("cpu"), "rows": rows,
                                               "parts_ms": {k: 1e3 * statistics.median(v) for k, v in parts.items()},
                                               "reference_score": scores["reference"]}, indent=1))


if __name__ == "__main__":
    main()
