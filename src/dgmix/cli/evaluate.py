"""``dgmix evaluate SCORES_DIR``: DCASE 2022 Task 2 metrics of a folder of score files.

Reads every ``anomaly_score_<machine>_section_<XX>_test.csv`` (and ``decision_result_...`` when
present), takes labels from development-set file names or from ``--ground-truth DIR`` (the official
evaluator's ``ground_truth_data`` / ``ground_truth_domain`` layout), and prints per-machine rows
(AUC Source, AUC Target, pAUC, Harmonic Mean, paper Tables 2-3 layout), the overall row and the
official score. ``--out DIR`` writes results.md / results.csv / results.json; ``--json`` prints the
JSON instead of the table. A section whose clips lack a group (e.g. no source-domain normal clip)
gets the metrics that can be computed, the others print as n/a, with one warning line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["evaluate", "register"]


def evaluate(
    scores_dir: Annotated[Path, typer.Argument(
        help="Folder with anomaly_score_<machine>_section_<XX>_test.csv files.", show_default=False)],
    ground_truth: Annotated[Path | None, typer.Option(
        "--ground-truth", "-g",
        help="Folder with ground_truth_data/ and ground_truth_domain/ (evaluator layout); "
             "default: labels from development-set file names.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write results.md, results.csv and results.json here.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the results as JSON instead of the table.")] = False,
    method: Annotated[str | None, typer.Option(
        "--method", help="Method name in the tables (default: the folder name).")] = None,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Evaluate even when the ground truth has sections without a score file "
                                "(their values count as n/a).")] = False,
    paper: Annotated[str | None, typer.Option(
        "--paper", help="Show the paper's rows of this method for comparison (baseline, scratch, vicreg or dgmix).")
    ] = None,
) -> None:
    """Compute AUC-S, AUC-T, pAUC per section, per-machine harmonic means and the official score."""
    from dgmix.cli.common import fail, guarded
    from dgmix.metrics import PAPER_RESULTS, evaluate_scores_dir

    if paper is not None and paper not in PAPER_RESULTS:
        fail(f"--paper must be one of {', '.join(PAPER_RESULTS)}, got {paper!r}", code=2)
    notes: list[str] = []
    warnings: list[str] = []
    with guarded():
        table = evaluate_scores_dir(scores_dir, ground_truth, method, notes, warnings, allow_missing)
        ref = {table.methods()[0]: PAPER_RESULTS[paper]} if paper is not None else None
        written = table.write(out, ref) if out is not None else {}
    for line in [f"note: {n}" for n in notes] + [f"warning: {w}" for w in warnings]:
        typer.echo(line, err=True)
    typer.echo(json.dumps(table.to_json_dict(), indent=2) if as_json else table.to_markdown(ref), nl=as_json)
    for path in written.values():
        typer.echo(f"wrote {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` verb to ``app``."""
    app.command("evaluate")(evaluate)
