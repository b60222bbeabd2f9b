"""``dgmix evaluate``: the DCASE metrics of a folder of official-format score CSVs.

Reads each ``anomaly_score_<machine>_section_<XX>_test.csv`` (and its ``decision_result_...``),
takes the labels from the development-set file names or the evaluator's ground truth, and fills a
:class:`~dgmix.metrics.tables.ResultsTable` with the metrics and the jackknife interval.
"""

from __future__ import annotations

import re
from pathlib import Path

from dgmix.errors import InputError
from dgmix.metrics.confidence import SectionScores, official_score_ci
from dgmix.metrics.dcase import SectionResult, missing_note, section_metrics
from dgmix.metrics.tables import ResultsTable

__all__ = ["evaluate_scores_dir"]


def evaluate_scores_dir(scores_dir: str | Path, ground_truth: str | Path | None = None, method: str | None = None,
                        notes: list[str] | None = None, warnings: list[str] | None = None,
                        allow_missing: bool = False) -> ResultsTable:
    """Evaluate a folder of official-format score files (what ``dgmix evaluate`` does).

    Every ``anomaly_score_<machine>_section_<XX>_test.csv`` in ``scores_dir`` is evaluated (with its
    ``decision_result_...`` file when present). Labels come from the development-set file names,
    or from ``ground_truth`` (the evaluator's ``ground_truth_data`` / ``ground_truth_domain``
    layout) when given. ``method`` names the table's method (default: the folder name). Remarks
    that are not errors are appended to ``notes``. A ground-truth section without a score file is
    an error unless ``allow_missing``; then its three values count as expected and n/a (the
    official score averages over the others, and says so);
    one line per section whose clips lack a group (its missing values are n/a, as in ``dgmix
    run``) to ``warnings``.

    Raises:
        InputError: no score file, unreadable or non-numeric file, names that do not match the
            ground truth, a ground-truth section without its score file (unless ``allow_missing``).
    """
    from dgmix.scoring import csvio

    root = Path(scores_dir)
    files = csvio.find_score_files(root)
    if not files:
        raise InputError(root, "no anomaly_score_<machine>_section_<XX>_test.csv files here")
    name = method or root.resolve().name or "scores"
    if ground_truth is not None:
        gt_root = Path(ground_truth)
        if not (gt_root / "ground_truth_data").is_dir():
            raise InputError(gt_root, "no ground_truth_data folder (expected the evaluator's "
                                      "ground_truth_data/ and ground_truth_domain/ layout)")
        have = {(m, s) for m, s, _, _ in files}
        pat = re.compile(r"^ground_truth_(.+)_section_(\d{2})_test\.csv$")
        unscored = sorted((m[1], m[2]) for p in (gt_root / "ground_truth_data").iterdir()
                          if (m := pat.match(p.name)) and (m[1], m[2]) not in have)
        if unscored and not allow_missing:
            names = ", ".join(csvio.score_file_name(m, s) for m, s in unscored)
            raise InputError(root, f"no score file for {len(unscored)} ground-truth section(s): {names} "
                                   "(--allow-missing evaluates the others and counts these as n/a)")
        if unscored and notes is not None:
            notes.append(f"{len(unscored)} ground-truth section(s) have no score file, counted as n/a: "
                         + ", ".join(f"{m}/{s}" for m, s in unscored))
    else:
        unscored = []
    table = ResultsTable()
    groups: list[SectionScores] = []
    for machine, section, score_path, dec_path in files:
        names, scores = csvio.read_scores(score_path)
        gt = (csvio.read_ground_truth(ground_truth, machine, section) if ground_truth is not None
              else csvio.labels_from_names(names, score_path))
        y_true, is_target = gt.for_names(names, score_path)
        y_pred = None if dec_path is None else csvio.align_values(
            names, *csvio.read_decisions(dec_path), dec_path, "file names do not match the score file")
        try:
            res = section_metrics(y_true, scores, is_target, y_pred)
        except ValueError as e:
            raise InputError(score_path, str(e)) from e
        if warnings is not None and (note := missing_note(machine, section, res.empty_groups)) is not None:
            warnings.append(note)
        table.add(name, machine, section, res)
        groups.append(SectionScores(y_true, scores, is_target))
    for machine, section in unscored:  # expected by the ground truth: three n/a values each
        table.add(name, machine, section, SectionResult(None, None, None, empty_groups=("scored",)))
    if table.official_score(name) is None:  # nothing to average: no interval either
        return table
    try:
        table.set_ci(name, official_score_ci(groups))
    except ValueError as e:  # a group with a single clip: no leave-one-out replicate exists
        if notes is not None:
            notes.append(f"no confidence interval: {e}")
    return table
