"""The ``logmel`` detector, pooling x back end x domain handling, with jackknife CIs (docs/results.md §6).

One *cell* = a pooling over time of the raw log-mel frames (max, GWRP with r, mean), a back end
(1-NN; 1-NN or 3-NN on standardised vectors; a BIC-sized diagonal GMM; one Gaussian with a
Ledoit-Wolf covariance) and a domain handling (none, or one bank / density per section and domain),
named ``pooling/backend/domain`` (:mod:`dgmix.candidates`). Every cell goes through the package's
own detector path: :func:`dgmix.methods.fit_detector` with the ScoringConfig fields of
:func:`dgmix.candidates.candidate_fields` (thresholds from leave-one-out / held-out training
scores), the test clips scored by the fitted :class:`~dgmix.scoring.detector.Detector` (and, as a
check, by the same detector saved and loaded again), evaluated with the official rules; the 95 %
interval is the jackknife of the official score over the test clips (:mod:`dgmix.metrics.confidence`).

Usage::

    python benchmarks/fewshot_table.py run --data DIR --out CELLS.json [--cache DIR] [--cells a,b]
    python benchmarks/fewshot_table.py select CELLS.json          # the selection rule (below)
    python benchmarks/fewshot_table.py table SEL.json [OTHER.json ...]   # markdown, cells as rows

``run`` skips the cells that CELLS.json already holds, so an interrupted run resumes.

Two selection rules, each fixed before it was applied:

* the first (§6.1): the cell with the highest official score on the synthetic benchmark set --
  one configuration for every machine type;
* the second, the cell ``selected`` (§6.3): ``scoring.select: pseudo``, the choice made per
  machine type on its training clips alone, by cross-validated AUC against generic
  pseudo-anomalies (dgmix.methods.selection). It reads no test clip of any set.

Nothing chosen here looks at a test label of the set it is reported on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgmix.candidates import SCORING_CANDIDATES, candidate_fields
from dgmix.config import ScoringConfig, load_config
from dgmix.data import scan
from dgmix.methods import fit_detector, load_machine
from dgmix.metrics.confidence import SectionScores, official_score_ci
from dgmix.metrics.tables import ResultsTable
from dgmix.pipeline import evaluate_machine
from dgmix.scoring.detector import Detector

#: the label-free choice (``scoring.select: pseudo``, dgmix.methods.selection) as one more cell
SELECTED = "selected"


def cell_fields(name: str) -> dict[str, Any]:
    return {"select": "pseudo"} if name == SELECTED else candidate_fields(name)


def all_cells() -> list[str]:
    return [*SCORING_CANDIDATES, SELECTED]


def cell_scoring(base: ScoringConfig, name: str) -> ScoringConfig:
    """The scoring of one cell: ``base`` with the cell's fields (no per-method entries; a fixed
    cell is used as given, ``selected`` chooses among the whole grid)."""
    fields = {"per_method": {}, "select": "none", "select_candidates": [], **cell_fields(name)}
    return dataclasses.replace(base, **fields)


def run(data: Path, out: Path, cache: Path, cells: list[str]) -> dict[str, Any]:
    cfg = load_config("cpu")
    ds = scan(data)
    mds = [load_machine(ds, m, cfg.features, cache, progress=False) for m in ds.machines()]
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    if "_meta" not in results:  # log-mel extraction cost per clip (every cell pays it once per clip)
        md = mds[0]
        det = fit_detector("logmel", md, cfg, cell_scoring(cfg.scoring, SCORING_CANDIDATES[0]))
        paths = [r.path for r in md.test[:20]]
        t0 = time.perf_counter()
        for p in paths:
            det.features_of(p)
        results["_meta"] = {"logmel_ms_per_clip": 1000 * (time.perf_counter() - t0) / len(paths),
                            "clip_seconds": float(md.test_feats[0].shape[1] * cfg.features.hop_length
                                                  / cfg.features.sample_rate)}
    for name in cells:
        if name in results:
            continue
        fields = cell_fields(name)
        scoring = cell_scoring(cfg.scoring, name)
        table, groups = ResultsTable(), []
        fit_s = score_s = 0.0
        n_train = n_test = 0
        chosen = {}
        for md in mds:
            sections = [r.section for r in md.test]
            t0 = time.perf_counter()
            det = fit_detector("logmel", md, cfg, scoring)
            fit_s += time.perf_counter() - t0
            if det.info.selection is not None:
                chosen[md.machine] = det.info.selection["chosen"]
            t0 = time.perf_counter()
            scores = det.score_features(md.test_feats, sections)
            score_s += time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as tmp:  # the saved detector scores the same
                again = Detector.load(det.save(Path(tmp) / "detector.pt")).score_features(md.test_feats, sections)
            np.testing.assert_array_equal(again, scores)
            n_train += len(md.train)
            n_test += len(md.test)
            res = evaluate_machine(md, scores)
            table.add_machine(name, md.machine, res)
            for sec in res:
                idx = [i for i, r in enumerate(md.test) if r.section == sec]
                groups.append(SectionScores(np.array([md.test[i].label == "anomaly" for i in idx], dtype=int),
                                            scores[idx],
                                            np.array([md.test[i].domain == "target" for i in idx], dtype=int)))
        o = table.overall(name)
        ci = official_score_ci(groups)
        results[name] = {
            "fields": fields, "official": ci.estimate, "ci95": ci.half_width, "jackknife": ci.jackknife,
            "auc_source": o.auc_source, "auc_target": o.auc_target, "pauc": o.pauc,
            "n_test": n_test, "n_train": n_train,
            "fit_ms_per_train_clip": 1000 * fit_s / n_train, "score_ms_per_test_clip": 1000 * score_s / n_test,
            **({"chosen": chosen} if chosen else {}),
        }
        print(f"{name:28s} {100 * ci.estimate:6.2f} ± {100 * ci.half_width:5.2f}  "
              f"S {100 * o.auc_source:5.1f} T {100 * o.auc_target:5.1f} p {100 * o.pauc:5.1f}", flush=True)
        out.write_text(json.dumps(results, indent=1))
    return results


def select(results: dict[str, Any]) -> str:
    """The first selection rule (§6.1): highest official score on the synthetic benchmark set."""
    return max((k for k in results if k not in ("_meta", SELECTED)), key=lambda k: results[k]["official"])


def table(files: list[Path]) -> str:
    sets = [(f.stem, json.loads(f.read_text())) for f in files]
    head = "| pooling | back end | domain | " + " | ".join(
        f"{n}: official ± CI95 | {n}: AUC-S / AUC-T / pAUC" for n, _ in sets) + " |"
    lines = [head, "|---|---|---|" + "---:|---:|" * len(sets)]
    for name in sets[0][1]:
        if name == "_meta":
            continue
        p, b, d = name.split("/") if name != SELECTED else ("chosen per machine type", "on training clips", "")
        cells = []
        for _, res in sets:
            r = res.get(name)
            if r is None:
                cells += ["", ""]
                continue
            cells += [f"{100 * r['official']:.2f} ± {100 * r['ci95']:.2f}",
                      f"{100 * r['auc_source']:.1f} / {100 * r['auc_target']:.1f} / {100 * r['pauc']:.1f}"]
        lines.append(f"| {p} | {b} | {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--cache", type=Path, default=None)
    r.add_argument("--cells", default="all", help="comma list of pooling/backend/domain, or all")
    r.add_argument("--threads", type=int, default=1, help="torch threads (1: small ops, shared CPU)")
    s = sub.add_parser("select")
    s.add_argument("cells", type=Path)
    t = sub.add_parser("table")
    t.add_argument("files", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        torch.set_num_threads(a.threads)
        cells = all_cells() if a.cells == "all" else a.cells.split(",")
        cache = a.cache or a.out.with_suffix(".cache")
        run(a.data, a.out, cache, cells)
    elif a.cmd == "select":
        res = json.loads(a.cells.read_text())
        best = select(res)
        print(json.dumps({"rule": "highest official score", "cell": best, **res[best]}, indent=1))
    else:
        sys.stdout.write(table(a.files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
