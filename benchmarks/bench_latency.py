"""Latency of scoring one 10-s clip, WAV bytes to anomaly score, on the CPU.

What ``dgmix score`` does per clip: read and decode the WAV, log-mel (the package's torch front
end), cut the 32 windows, embed them with the encoder, pool, 1-NN distance to the bank. Each
variant is timed on the same clip and the same trained dgmix detector, interleaved round by round,
and its score is compared with the reference's:

* ``reference``: the plain trained encoder in eval mode (BatchNorm not folded, NCHW layout), then
  the detector's own pooling and back end (the 1-NN bank of a dgmix run);
* ``fold``: BatchNorm folded into the convolutions (:func:`dgmix.models.fold.fold_batchnorm`);
* ``fold+cl``: the folded encoder in channels-last layout;
* ``fold+cl+t1``: the same on one thread (``torch.set_num_threads(1)``);
* ``fold+cl+bf16``: bf16 autocast on the CPU (where the CPU has bf16 instructions);
* ``dgmix score (detector)``: :meth:`Detector.score_features <dgmix.scoring.detector.Detector.score_features>`
  of the loaded ``detector.pt``, the path of ``dgmix score`` (its encoder is folded + channels-last,
  :func:`dgmix.scoring.detector.inference_encoder`).

Also the parts of the reference, alone: decode + log-mel, encoder, pooling + k-NN. ONNX Runtime
is not measured here (not a dependency; a one-off check: 21 ms for the folded encoder's 32 windows
on 2 threads, BENCHMARKS.md §4). Without ``--detector`` a dgmix detector is trained first on a
small synthetic valve set with the ``cpu`` preset (~1 min; ``--preset tiny`` for a smoke test).
A given ``--detector`` needs the plain encoder it was built from, ``--encoder`` (the fine-tuning
stage's ``encoder.pt``, which ``dgmix run --keep-checkpoints`` keeps), and a ``--clip`` to score.

    python benchmarks/bench_latency.py --json latency.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import machine_info
from torch import nn

from dgmix.checkpoint import load_checkpoint
from dgmix.models import build_encoder
from dgmix.models.fold import fold_batchnorm
from dgmix.scoring.detector import Detector
from dgmix.scoring.pooling import pool


def make_detector(work: Path, preset: str) -> tuple[Path, Path, Path]:
    """Train a dgmix detector on a small synthetic valve set; returns (detector, encoder, a 10-s test clip)."""
    from dgmix.config import load_config
    from dgmix.pipeline import run_pipeline
    from dgmix.synth import SynthConfig, generate
    from dgmix.training.pretrain import ENCODER_FILE

    generate(work / "data", SynthConfig(machines=("valve",), sections=("00",), train_source=10, train_target=2,
                                        test_per_group=1), workers=1, progress=False)
    root = work / "data" / "dev_data"
    run_pipeline(root, work / "run", load_config(preset), methods=["dgmix"], progress=False, echo=lambda s: None)
    clip = sorted((root / "valve" / "test").glob("*.wav"))[0]
    pair = work / "run" / "dgmix" / "valve"
    return pair / "detector.pt", pair / "finetune" / ENCODER_FILE, clip


def plain_encoder(det: Detector, path: Path) -> nn.Module:
    """The trained encoder as training saved it (BatchNorm unfolded), in eval mode."""
    enc = build_encoder(det.info.model, det.params)
    enc.load_state_dict(load_checkpoint(path)["encoder"])
    return enc.eval()


def measure(det: Detector, plain: nn.Module, clip: Path, args: argparse.Namespace) -> None:
    """Time every variant on ``clip``, print the table and write ``--json``."""
    section = det.section_names[0]
    sec = torch.tensor(int(det.section_index([section])[0]))
    folded = fold_batchnorm(plain)
    folded_cl = fold_batchnorm(plain).to(memory_format=torch.channels_last)
    bf16 = "bf16" in open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else False
    # (encoder or None for the detector's own path, channels-last input, threads, bf16 autocast)
    variants: dict[str, tuple[nn.Module | None, bool, int, bool]] = {
        "reference": (plain, False, 2, False),
        "fold": (folded, False, 2, False),
        "fold+cl": (folded_cl, True, 2, False),
        "fold+cl+t1": (folded_cl, True, 1, False),
        "dgmix score (detector)": (None, True, 2, False),
    }
    if bf16:
        variants["fold+cl+bf16"] = (folded_cl, True, 2, True)

    @torch.inference_mode()
    def embed(enc: nn.Module, frames: torch.Tensor, cl: bool, autocast: bool) -> torch.Tensor:
        w = det.windows(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = enc(w.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format))
        return out.float()

    @torch.inference_mode()
    def back_end(windows: torch.Tensor) -> float:
        """The detector's pooling and back end on one clip's window embeddings."""
        vec = pool(windows, det.info.pooling, det.info.gwrp_r)
        return float(det.backend(vec[None], sec)[0])

    def score(enc: nn.Module | None, cl: bool, threads: int, autocast: bool) -> float:
        torch.set_num_threads(threads)
        feat = det.features_of(clip)
        if enc is None:
            return float(det.score_features([feat], [section])[0])
        return back_end(embed(enc, torch.from_numpy(feat), cl, autocast))

    times: dict[str, list[float]] = {n: [] for n in variants}
    scores = {n: score(*v) for n, v in variants.items()}  # warm-up + the score to compare
    parts: dict[str, list[float]] = {"decode+logmel": [], "encoder": [], "pooling+knn": []}
    frames = torch.from_numpy(det.features_of(clip))
    for _ in range(args.rounds):
        for n, v in variants.items():
            t0 = time.perf_counter()
            score(*v)
            times[n].append(time.perf_counter() - t0)
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        det.features_of(clip)
        t1 = time.perf_counter()
        emb = embed(plain, frames, False, False)
        t2 = time.perf_counter()
        back_end(emb)
        t3 = time.perf_counter()
        parts["decode+logmel"].append(t1 - t0)
        parts["encoder"].append(t2 - t1)
        parts["pooling+knn"].append(t3 - t2)
    ref = statistics.median(times["reference"])
    seconds = frames.shape[1] * det.params.hop_length / det.params.sample_rate
    print(f"\none {seconds:.0f}-s clip ({clip.name}), {args.rounds} rounds, median ms; "
          f"{torch.get_num_threads()} threads unless t1; back end {det.info.pooling} pooling + {det.info.backend}")
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
                                               "reference_score": scores["reference"],
                                               "pooling": det.info.pooling, "backend": det.info.backend},
                                              indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detector", default=None, help="a dgmix detector.pt (default: train one)")
    ap.add_argument("--encoder", default=None, help="with --detector: the encoder.pt it was built from")
    ap.add_argument("--clip", default=None, help="with --detector: the WAV clip to score")
    ap.add_argument("--preset", default="cpu", help="preset of the detector trained without --detector")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if (args.detector is None) != (args.encoder is None) or (args.detector is None) != (args.clip is None):
        ap.error("give --detector, --encoder and --clip together")
    with tempfile.TemporaryDirectory() as tmp:
        if args.detector is None:
            t0 = time.perf_counter()
            det_path, enc_path, clip = make_detector(Path(tmp), args.preset)
            print(f"trained a dgmix detector in {time.perf_counter() - t0:.0f} s", flush=True)
        else:
            det_path, enc_path, clip = Path(args.detector), Path(args.encoder), Path(args.clip)
        det = Detector.load(det_path)
        if det.info.kind != "encoder":
            raise SystemExit(f"{det_path}: a {det.info.kind} detector; this benchmark needs an encoder + back end one")
        plain = plain_encoder(det, enc_path)
        measure(det, plain, clip, args)  # inside: the trained detector's clip lives in ``tmp``


if __name__ == "__main__":
    main()
