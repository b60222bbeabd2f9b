"""Shared helpers of the benchmark scripts: machine description, quiet-CPU waiting, device sync.

A shared machine makes timings noisy; :func:`other_busy` measures how much of all CPUs OTHER
processes used between two :func:`cpu_busy_sample` calls (Linux ``/proc/stat``), and
:func:`wait_until_quiet` sleeps until they leave the CPUs (nearly) idle.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

import torch

__all__ = ["cpu_busy_sample", "cpu_model", "machine_info", "other_busy", "sync", "wait_until_quiet"]


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


def sync(cuda: bool) -> None:
    """Wait for the GPU's queued work (so a timer covers it); nothing on CPU."""
    if cuda:
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- quiet CPUs


def cpu_busy_sample() -> tuple[float, float, float] | None:
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
        a = cpu_busy_sample()
        time.sleep(probe_s)
        busy = other_busy(a, cpu_busy_sample())
        spent = time.perf_counter() - t0
        if busy is None or busy <= max_other_busy or spent >= budget_s:
            return spent
        time.sleep(min(3.0, max(0.0, budget_s - spent)))

