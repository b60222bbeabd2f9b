"""Label-free stability of ``scoring.select: pseudo`` (docs/results.md §6.3): the choice of each
machine type for seeds 0-4 with ``select_repeats`` R, made on the training clips only (no label
and no test clip is read). Each choice is the one ``dgmix run`` makes for the ``logmel`` detector:
:func:`dgmix.methods.fit_detector` with ``select: pseudo`` over the whole grid of
:mod:`dgmix.candidates`, read back from the detector's ``info.selection``. Results accumulate in
OUT.json under ``R<R>``.

Usage::

    python benchmarks/selection_seeds.py DATA_DIR CACHE_DIR OUT.json R [SEEDS]

``SEEDS``: how many seeds, 0 .. SEEDS-1 (default 5).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch

from dgmix.config import load_config
from dgmix.data import scan
from dgmix.methods import fit_detector, load_machine


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        raise SystemExit(__doc__)
    data, cache, out, repeats = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    seeds = int(argv[4]) if len(argv) == 5 else 5
    torch.set_num_threads(1)
    ds = scan(data)
    res = json.loads(out.read_text()) if out.is_file() else {}
    for machine in ds.machines():
        cfg = load_config("cpu")
        md = load_machine(ds, machine, cfg.features, cache, progress=False)
        # the logmel detector's choice over the whole grid (the preset's candidate list is not used)
        scoring = dataclasses.replace(cfg.scoring, per_method={}, select="pseudo", select_candidates=[],
                                      select_repeats=repeats)
        for seed in range(seeds):
            cfg = dataclasses.replace(cfg, seed=seed)
            sel = fit_detector("logmel", md, cfg, scoring).info.selection
            top = sorted(((c["score"], c["name"]) for c in sel["candidates"] if c["score"] is not None),
                         reverse=True)[:5]
            res.setdefault(f"R{repeats}", {}).setdefault(machine, {})[str(seed)] = {
                "chosen": sel["chosen"], "seconds": sel["seconds"], "top": top}
            print(repeats, machine, seed, sel["chosen"], f"{sel['seconds']:.1f}s", flush=True)
            out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
