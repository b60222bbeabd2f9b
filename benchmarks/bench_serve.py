"""A bounded load test of ``dgmix serve`` on loopback (a real uvicorn in a subprocess).

Sends ``--requests`` (1,000) requests, ``--concurrency`` (8) at a time, good and bad mixed in a
seeded order: 10-s WAV clips as multipart uploads and as raw bodies (expected 200) and bad ones
(not audio and FLAC: 415; a 1-s clip, an unknown section, a clip without a section: 422; a body
over the 10 MB limit: 413; a multipart body without a file: 400). It checks that no response is a
5xx, that every response has the expected status, that the server is still alive afterwards
(``GET /health``) and that a last good request gives the same score as scoring the clip in this
process with :func:`dgmix.scoring.clips.score_clip`. It reports p50/p95 latency (client side,
request sent to response read) and requests/s, and as the reference measured in the same run the
in-process ``score_clip`` time per clip, one clip at a time (what the server does for a good
request, without HTTP).

Without ``--detector`` it first writes a small synthetic fan set of 10-s clips and builds the
``random`` detector on it (the Table 1 encoder with re-estimated BN statistics + 1-NN bank: the
same scoring work as a trained dgmix detector, in seconds). The whole run stops after
``--max-seconds`` (a failure). ``--update-md BENCHMARKS.md`` writes the result section into that
file (between ``<!-- bench_serve -->`` markers, replacing an earlier one).

    python benchmarks/bench_serve.py --update-md BENCHMARKS.md --json serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from bench_common import machine_info

import dgmix
from dgmix.scoring.clips import load_detector
from dgmix.serve.service import DEFAULT_MAX_BYTES

START, END = "<!-- bench_serve:start -->", "<!-- bench_serve:end -->"


@dataclass(frozen=True)
class Req:
    kind: str
    expect: int
    params: dict
    content: bytes | None = None
    files: dict | None = None


def make_detector(work: Path) -> tuple[Path, list[Path]]:
    """A ``random`` detector on a synthetic fan set of 10-s clips; returns (detector.pt, test clips)."""
    from dgmix.config import load_config
    from dgmix.pipeline import run_pipeline
    from dgmix.synth import SynthConfig, generate

    generate(work / "data", SynthConfig(machines=("fan",), sections=("00", "01"), train_source=8, train_target=2,
                                        test_per_group=2, duration=10.0, seed=3), workers=1, progress=False)
    root = work / "data" / "dev_data"
    run_pipeline(root, work / "run", load_config("tiny"), methods=["random"], progress=False, echo=lambda s: None,
                 cache_dir=work / "cache")
    return work / "run" / "random" / "fan" / "detector.pt", sorted((root / "fan" / "test").glob("*.wav"))


def _wav(x: np.ndarray, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt)
    return buf.getvalue()


def request_mix(clips: list[Path], n: int, seed: int) -> list[Req]:
    """``n`` requests: 70 % good (half multipart, half raw), 30 % bad, in a seeded random order."""
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(16000 * 3) * 0.1).astype(np.float32)
    data = {c: c.read_bytes() for c in clips}
    bad = [
        ("not audio", 415, 0.06, lambda c: Req("not audio", 415, {"section": "00"}, content=b"junk" * 500)),
        ("FLAC", 415, 0.04, lambda c: Req("FLAC", 415, {"section": "00"}, content=_wav(noise, "FLAC"))),
        ("1-s clip", 422, 0.06, lambda c: Req("1-s clip", 422, {"section": "00"}, content=_wav(noise[:16000]))),
        ("unknown section", 422, 0.04, lambda c: Req("unknown section", 422, {"section": "42"}, content=data[c])),
        ("no section", 422, 0.03, lambda c: Req("no section", 422, {}, content=data[c])),
        ("over 10 MB", 413, 0.03, lambda c: Req("over 10 MB", 413, {}, content=b"\0" * (DEFAULT_MAX_BYTES + 1))),
        ("no file field", 400, 0.04, lambda c: Req("no file field", 400, {},
                                                   files={"other": (c.name, data[c], "audio/wav")})),
    ]
    out: list[Req] = []
    counts = {name: int(round(share * n)) for name, _, share, _ in bad}
    n_good = n - sum(counts.values())
    for i in range(n_good):
        c = clips[i % len(clips)]
        if i % 2 == 0:
            out.append(Req("good multipart", 200, {}, files={"file": (c.name, data[c], "audio/wav")}))
        else:
            out.append(Req("good raw", 200, {"filename": c.name}, content=data[c]))
    for name, _, _, make in bad:
        out += [make(clips[i % len(clips)]) for i in range(counts[name])]
    random.Random(seed).shuffle(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(detector: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(dgmix.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "dgmix", "serve", str(detector), "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_up(base: str, proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit("server did not come up")


async def run_load(base: str, reqs: list[Req], concurrency: int) -> tuple[list[tuple[Req, int, float]], float]:
    results: list[tuple[Req, int, float]] = []
    queue: asyncio.Queue[Req] = asyncio.Queue()
    for r in reqs:
        queue.put_nowait(r)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                r = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                resp = await client.post("/score", params=r.params, content=r.content, files=r.files)
                status = resp.status_code
                if status != 200:
                    assert "error" in resp.json(), resp.text
            except httpx.TransportError as exc:  # counted as a failure, reported below
                status = -1
                print(f"transport error on {r.kind}: {exc!r}", file=sys.stderr)
            results.append((r, status, time.perf_counter() - t0))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return results, time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) * 1000.0


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def in_process_reference(detector: Path, clips: list[Path], rounds: int) -> tuple[float, float, dict[str, float]]:
    """Median seconds per clip of score_clip in this process, one clip at a time, run in a worker
    thread (as the server runs it) and in the main thread; and each clip's score. After a warm-up
    over every clip (which gives the scores), timed on the first 8 clips."""
    from dgmix.scoring.clips import score_clip

    det = load_detector(detector)
    scores = {c.name: score_clip(det, c).score for c in clips}  # warm-up
    worker: list[float] = []
    main: list[float] = []

    def timed(out: list[float]) -> None:
        for c in clips[:8]:
            t0 = time.perf_counter()
            score_clip(det, c)
            out.append(time.perf_counter() - t0)

    for _ in range(rounds):  # interleaved, so that a busy phase of the machine hits both
        th = threading.Thread(target=timed, args=(worker,))
        th.start()
        th.join()
        timed(main)
    return statistics.median(worker), statistics.median(main), scores


def markdown(res: dict) -> str:
    m, s = res["machine"], res["summary"]
    rows = "\n".join(f"| {k} | {v['n']} | {v['status']} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} |"
                     for k, v in res["by_kind"].items())
    return f"""{START}
## 7. `dgmix serve` under load

Command: `{res['command']}` ({m['date']}; {m['cpu_model']}, {m['cpu_count']} vCPUs, torch {m['torch']},
Python {m['python']}; load average {res['loadavg_start']} at the start, {res['loadavg_end']} at the end,
a shared machine). Detector: {res['detector']}; clips of {res['clip_seconds']:.1f} s.
Server: `dgmix serve` (uvicorn, one process, scoring one clip at a time) on 127.0.0.1, started in a
subprocess; client: httpx, {res['concurrency']} requests in flight.

**{s['requests']} requests in {s['wall_s']:.1f} s: {s['rps']:.1f} requests/s; p50 {s['p50_ms']:.1f} ms,
p95 {s['p95_ms']:.1f} ms** (all requests). Good requests only: p50 {s['good_p50_ms']:.1f} ms, p95
{s['good_p95_ms']:.1f} ms, {s['good_rps']:.2f} scored clips/s. 5xx responses: {s['n_5xx']}; unexpected
statuses: {s['n_unexpected']}; transport errors: {s['n_transport']}. After the run: `/health`
{s['health_after']}, and a good request scored {s['final_score']:.6f}, in-process
{s['reference_score']:.6f} (equal: {s['final_equal']}). Server peak RSS {s['server_peak_rss_mb']} MB.

Reference in the same run: `score_clip` in one process, one clip at a time, in a worker thread as
the server runs it: {s['ref_ms']:.1f} ms per clip (median of {res['ref_rounds']} × {min(8, res['n_clips'])})
= {1000 / s['ref_ms']:.2f} clips/s; the server's good-request throughput under the mixed load is
**{s['good_rps'] * s['ref_ms'] / 1000:.2f}×** that (the bad requests share the server's time, and each clip
is uploaded and written to a temporary file). The same calls in the main thread, interleaved with
those: {s['ref_main_thread_ms']:.1f} ms per clip.

| request | n | status | p50 (ms) | p95 (ms) |
|---|---:|---:|---:|---:|
{rows}
{END}"""


def update_md(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        a, b = text.index(START), text.index(END) + len(END)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", type=Path, help="detector.pt (default: build a random detector on 10-s clips)")
    ap.add_argument("--clips", type=Path, help="folder of WAV clips the detector can score (with --detector)")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-rounds", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=1200.0, help="give up (exit 1) after this long")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--update-md", type=Path)
    args = ap.parse_args()
    if (args.detector is None) != (args.clips is None):
        ap.error("give --detector and --clips together")

    deadline = time.monotonic() + args.max_seconds
    loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if args.detector is None:
            detector, clips = make_detector(Path(tmp))
            described = "`random` method (tiny preset) on a synthetic fan set, 2 sections"
        else:
            detector, clips = args.detector, sorted(args.clips.glob("*.wav"))
            described = str(args.detector)
        clip_seconds = sf.info(str(clips[0])).duration
        ref_s, ref_main_s, ref_scores = in_process_reference(detector, clips, args.ref_rounds)
        reqs = request_mix(clips, args.requests, args.seed)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(detector, port)
        try:
            startup = wait_up(base, proc, 180)
            remaining = deadline - time.monotonic()
            try:
                results, wall = asyncio.run(asyncio.wait_for(run_load(base, reqs, args.concurrency), remaining))
            except TimeoutError:
                raise SystemExit(f"the load did not finish within --max-seconds {args.max_seconds:.0f}") from None
            health = httpx.get(f"{base}/health", timeout=30).status_code
            last = clips[0]
            final = httpx.post(f"{base}/score", files={"file": (last.name, last.read_bytes(), "audio/wav")},
                               timeout=60).json()["score"]
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    lat = [t for _, _, t in results]
    good = [t for r, st, t in results if r.expect == 200]
    by_kind: dict[str, dict] = {}
    for kind in dict.fromkeys(r.kind for r, _, _ in results):
        sub = [(r, st, t) for r, st, t in results if r.kind == kind]
        statuses = sorted({st for _, st, _ in sub})
        by_kind[kind] = {"n": len(sub), "status": "/".join(map(str, statuses)),
                         "p50_ms": pct([t for *_, t in sub], 50), "p95_ms": pct([t for *_, t in sub], 95)}
    summary = {
        "requests": len(results), "wall_s": wall, "rps": len(results) / wall,
        "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
        "good_p50_ms": pct(good, 50), "good_p95_ms": pct(good, 95), "good_rps": len(good) / wall,
        "n_5xx": sum(1 for _, st, _ in results if st >= 500),
        "n_unexpected": sum(1 for r, st, _ in results if st != r.expect),
        "n_transport": sum(1 for _, st, _ in results if st == -1),
        "health_after": health, "final_score": final, "reference_score": ref_scores[clips[0].name],
        "final_equal": final == ref_scores[clips[0].name], "server_peak_rss_mb": None if rss is None else round(rss),
        "ref_ms": ref_s * 1000, "ref_main_thread_ms": ref_main_s * 1000, "startup_s": startup,
    }
    cmd = " ".join(["python", *sys.argv])
    res = {"machine": machine_info("cpu"), "command": cmd, "summary": summary,
           "by_kind": by_kind, "concurrency": args.concurrency, "detector": described,
           "clip_seconds": clip_seconds, "ref_rounds": args.ref_rounds, "n_clips": len(clips),
           "loadavg_start": loadavg_start, "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    section = markdown(res)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if args.update_md:
        update_md(args.update_md, section)
    ok = (summary["n_5xx"] == 0 and summary["n_unexpected"] == 0 and health == 200 and summary["final_equal"]
          and len(results) == args.requests)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
