"""Issue 11 item 6: the log-mel front end in clips/s against librosa, in the same run.

Both read the same 10-s 16-kHz WAV files from disk and compute the SPEC §2 log-mel (STFT 1024 /
hop 512, 128 mels, power 2, 10 log10(mel + eps)): ours is :func:`dgmix.features.clip_logmel`
(soundfile + the package's torch front end, what the feature cache runs per clip); the reference is
``soundfile.read`` + ``librosa.feature.melspectrogram`` + the same log. The largest difference in
dB over all clips is reported with the speed ratio. Rounds alternate between the two.

    python benchmarks/bench_frontend.py --clips 40 --rounds 3 --json frontend.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from bench_common import machine_info

from dgmix.features import FeatureParams, LogMel, clip_logmel

EPS = sys.float_info.epsilon


def reference(path: Path) -> np.ndarray:
    y, sr = sf.read(str(path), dtype="float32")
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
    return (10.0 * np.log10(mel + EPS)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    params = FeatureParams()
    module = LogMel(params)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(args.clips):  # noise + tones + clicks, 10 s at 16 kHz, 16-bit PCM
            t = np.arange(160_000) / 16000
            y = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * (200 + 37 * k) * t)
            y[:: 4000] += 0.5
            p = Path(tmp) / f"clip_{k:03d}.wav"
            sf.write(p, np.clip(y, -1, 1).astype(np.float32), 16000, subtype="PCM_16")
            paths.append(p)
        clip_logmel(paths[0], params, module)  # warm-up
        reference(paths[0])
        ours_s, ref_s = [], []
        max_diff = 0.0
        for r in range(args.rounds):
            t0 = time.perf_counter()
            ours = [clip_logmel(p, params, module) for p in paths]
            ours_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            refs = [reference(p) for p in paths]
            ref_s.append(time.perf_counter() - t0)
            if r == 0:
                max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, refs))
    ours_cps = args.clips / statistics.median(ours_s)
    ref_cps = args.clips / statistics.median(ref_s)
    print(f"{args.clips} ten-second clips, {args.rounds} rounds, {args.threads} threads")
    print("| front end | clips/s | ms per clip | vs librosa |")
    print("|---|---:|---:|---:|")
    print(f"| dgmix (soundfile + torch log-mel) | {ours_cps:.1f} | {1e3 / ours_cps:.2f} | {ours_cps / ref_cps:.2f}x |")
    print(f"| soundfile + librosa.feature.melspectrogram | {ref_cps:.1f} | {1e3 / ref_cps:.2f} | 1.00x |")
    print(f"largest difference: {max_diff:.2e} dB")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_info("cpu"), "clips": args.clips, "rounds": args.rounds,
            "dgmix_clips_per_s": ours_cps, "librosa_clips_per_s": ref_cps, "ratio": ours_cps / ref_cps,
            "max_abs_diff_db": max_diff, "librosa": librosa.__version__}, indent=1))


if __name__ == "__main__":
    main()
