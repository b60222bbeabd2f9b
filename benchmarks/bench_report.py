"""Output of bench_pretrain.py: the run header, the Markdown tables, the round summary and the JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_variants import Result

__all__ = ["format_rounds", "format_table", "header", "result_dict", "write_json"]


def header(info: dict[str, Any]) -> str:
    """The first lines of the output: date, machine, torch, settings, load average."""
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    return (f"dgmix pre-training benchmark  {info['date']}\n"
            f"CPU {info['cpu_model']} ({info['cpu_count']} CPUs){gpu}; torch {info['torch']}, "
            f"default threads {info['default_threads']}, interop threads "
            f"{info['interop_threads']}\n"
            f"device {info['device']}, batch {info['batch']} (x3 views), "
            f"{info['rounds']} rounds x {info['steps_per_round']} step(s), warm-up "
            f"{info['warmup']}; load average {info['loadavg_start']}")


def result_dict(r: Result, ref: Result, per_block: int) -> dict[str, Any]:
    """One variant's JSON entry (ratios against ``ref``, the naive variant)."""
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


def format_rounds(info: dict[str, Any]) -> str:
    """Load average at start and end, and the kept / discarded rounds of each benchmark."""
    lines = [f"\nload average: start {info['loadavg_start']}, end {info['loadavg_end']} "
             f"({info['cpu_count']} CPUs)"]
    for key in ("train_rounds", "infer_rounds"):
        rounds = info.get(key, [])
        busy = [r["other_busy"] for r in rounds if r["kept"] and r["other_busy"] is not None]
        lines.append(f"{key.replace('_', ' ')}: {sum(r['kept'] for r in rounds)} kept, "
                     f"{sum(not r['kept'] for r in rounds)} discarded as busy, "
                     f"{sum(r['kept'] and r['noisy'] for r in rounds)} kept although busy; "
                     f"other processes' CPU share in kept rounds: "
                     + (", ".join(f"{100 * b:.0f}%" for b in busy) or "n/a"))
    return "\n".join(lines)


def write_json(path: Path, info: dict[str, Any], train: list[Result], infer: list[Result],
               steps: int, infer_iters: int) -> None:
    """The run's context, and every variant's timings and ratios, as JSON at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "info": info,
        "train": [result_dict(r, train[0], steps) for r in train],
        "inference": [result_dict(r, infer[0], infer_iters) for r in infer],
    }, indent=2))
