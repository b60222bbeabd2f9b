"""Marginal cost of ``dgmix score`` per 10-s clip through the CLI, beside librosa's log-mel.

What a user pays per clip when pointing a detector at a folder: ``dgmix score DET FOLDER`` is run
as a child process on a folder of 1 clip and on a folder of ``1 + N`` clips (default N = 100);
the marginal cost per clip is ``(t(1 + N) − t(1)) / N``, so interpreter start, imports and loading
the detector drop out. Each (detector, folder) pair is timed ``--rounds`` times, interleaved, and
the median is used. In the same run, the reference: librosa's log-mel of the same N clips
(``librosa.load`` at 16 kHz + ``melspectrogram(n_fft=1024, hop_length=512, n_mels=128)`` +
``power_to_db``), per clip, in this process on the same 2 cores.

Detectors: trained here by ``dgmix run --preset cpu --methods logmel,dgmix`` on a small synthetic
valve set (section 00, 10 + 2 training clips, 26 test clips per group), or given with
``--detector NAME=PATH`` (repeatable) and ``--clips FOLDER``.

    python benchmarks/bench_score.py --json benchmarks/results/score_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import machine_info

DGMIX = [sys.executable, "-m", "dgmix"]


def _run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def train_detectors(work: Path) -> tuple[dict[str, Path], Path]:
    data = work / "data"
    subprocess.run(DGMIX + ["synth", str(data), "--machines", "valve", "--sections", "00", "--test-per-group", "26",
                            "--workers", "2", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    out = work / "run"
    subprocess.run(DGMIX + ["run", "--data", str(data / "dev_data"), "--methods", "logmel,dgmix", "--preset", "cpu",
                            "--out", str(out), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    dets = {m: out / m / "valve" / "detector.pt" for m in ("logmel", "dgmix")}
    return dets, data / "dev_data" / "valve" / "test"


def librosa_per_clip(clips: list[Path], rounds: int) -> float:
    import librosa
    import numpy as np

    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for c in clips:
            y, sr = librosa.load(c, sr=16000, mono=True)
            m = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
            np.asarray(librosa.power_to_db(m))
        times.append((time.perf_counter() - t0) / len(clips))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", default=[], help="NAME=PATH of a detector.pt (repeatable)")
    ap.add_argument("--clips", type=Path, help="folder of WAV clips (needed with --detector)")
    ap.add_argument("--n", type=int, default=100, help="clips of the large folder beyond the first")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_score_"))
    try:
        if a.detector:
            dets = {k: Path(v) for k, v in (d.split("=", 1) for d in a.detector)}
            clip_dir = a.clips
        else:
            t0 = time.perf_counter()
            dets, clip_dir = train_detectors(work)
            print(f"trained logmel and dgmix detectors in {time.perf_counter() - t0:.1f} s", flush=True)
        clips = sorted(Path(clip_dir).rglob("*.wav"))[: a.n + 1]
        if len(clips) < a.n + 1:
            raise SystemExit(f"{clip_dir}: {len(clips)} clips, need {a.n + 1}")
        one, many = work / "one", work / "many"
        for folder, chosen in ((one, clips[:1]), (many, clips)):
            folder.mkdir()
            for c in chosen:
                os.symlink(c.resolve(), folder / c.name)
        info = machine_info("cpu")
        info["load_start"] = os.getloadavg()
        timings: dict[str, dict[str, list[float]]] = {n: {"one": [], "many": []} for n in dets}
        for _ in range(a.rounds):  # interleaved: a busy phase hits every detector alike
            for name, det in dets.items():
                for key, folder in (("one", one), ("many", many)):
                    timings[name][key].append(_run(DGMIX + ["score", str(det), str(folder)]))
        ref = librosa_per_clip(clips[1:], a.rounds)
        rows = {}
        for name, t in timings.items():
            marginal = (statistics.median(t["many"]) - statistics.median(t["one"])) / a.n
            rows[name] = {"marginal_ms_per_clip": round(1e3 * marginal, 2), "vs_librosa": round(marginal / ref, 2),
                          "one_clip_s": round(statistics.median(t["one"]), 3),
                          f"{a.n + 1}_clips_s": round(statistics.median(t["many"]), 3),
                          "rounds_one": [round(x, 3) for x in t["one"]],
                          "rounds_many": [round(x, 3) for x in t["many"]]}
        res = {**info, "n": a.n, "rounds": a.rounds, "librosa_logmel_ms_per_clip": round(1e3 * ref, 2),
               "detectors": rows, "load_end": os.getloadavg()}
        print(f"librosa log-mel: {1e3 * ref:.2f} ms per clip")
        for name, r in rows.items():
            print(f"dgmix score, {name}: {r['marginal_ms_per_clip']:.2f} ms per clip ({r['vs_librosa']:.2f}x librosa; "
                  f"1 clip {r['one_clip_s']:.2f} s, {a.n + 1} clips {r[f'{a.n + 1}_clips_s']:.2f} s)")
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(res, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
