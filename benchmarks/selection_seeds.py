"""Label-free stability of ``scoring.select: pseudo`` (docs/results.md §6.3): the choice of each
machine type for seeds 0-4 with ``select_repeats`` R, made on the training clips only (no label
and no test clip is read). Results accumulate in OUT.json under ``R<R>``.

Usage::

    python benchmarks/selection_seeds.py DATA_DIR CACHE_DIR OUT.json R
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch

from dgmix.config import load_config
from dgmix.data import scan
from dgmix.methods import load_machine
from dgmix.methods.detector import choose_scoring
from dgmix.scoring.embed import logmel_frames


def main(argv: list[str]) -> int:
    data, cache, out, repeats = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    torch.set_num_threads(1)
    ds = scan(data)
    res = json.loads(out.read_text()) if out.is_file() else {}
    for machine in ds.machines():
        cfg = load_config("cpu")
        md = load_machine(ds, machine, cfg.features, cache, progress=False)
        for seed in range(5):
            cfg.seed = seed
            s = dataclasses.replace(cfg.scoring, method_defaults=False, select="pseudo", select_repeats=repeats)
            _, sel = choose_scoring(md, cfg, s, logmel_frames)
            top = sorted(((r.score, r.name) for r in sel.results if r.score is not None), reverse=True)[:5]
            res.setdefault(f"R{repeats}", {}).setdefault(machine, {})[str(seed)] = {
                "chosen": sel.chosen, "seconds": sel.seconds, "top": top}
            print(repeats, machine, seed, sel.chosen, f"{sel.seconds:.1f}s", flush=True)
            out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
