"""What ``dgmix run`` prints after its progress lines: one summary table, then where
the outputs are and the commands that use the best detector."""

from __future__ import annotations

from pathlib import Path

from dgmix.metrics.tables import ResultsTable
from dgmix.report.tables import all_machines


def summary_markdown(table: ResultsTable) -> str:
    """Method x machine type (harmonic mean of the machine's AUC-S, AUC-T, pAUC) and the official
    score, in %; a markdown table (per-section tables are in results.md and the report)."""
    machines = all_machines(table)
    lines = ["| method | " + " | ".join(machines) + " | official score |",
             "|---" * (len(machines) + 2) + "|"]
    for m in table.methods():
        own = set(table.machines(m))
        cells = [_pct(table.machine_summary(m, x).hmean) if x in own else "" for x in machines]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_pct(table.official_score(m))} |")
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    """A metric in %, or n/a where it could not be computed (a section lacking a test group)."""
    return "n/a" if v is None else f"{100 * v:.2f}"


def _test_folder(data_root: Path, machine: str) -> Path | None:
    return next((c for c in (data_root / machine / "test", data_root / "dev_data" / machine / "test",
                              data_root / "eval_data" / machine / "test") if c.is_dir()), None)


def where_lines(out: Path, table: ResultsTable, data_root: Path | None, report: Path | None) -> list[str]:
    """Where the report, detectors and CSVs are, and the ``dgmix score`` / ``dgmix serve`` commands
    for the best detector: the method with the best official score, on the machine type where it
    scored best."""
    lines = [f"report:     {report}"] if report is not None else []
    lines += [f"results:    {out}/results.md (per-section tables), results.csv, results.json",
              f"scores:     {out}/<method>/scores/ (official DCASE format: anomaly_score_*.csv, decision_result_*.csv; "
              "and p_value_*.csv)",
              f"detectors:  {out}/<method>/<machine>/detector.pt"]
    if report is not None:
        lines.append(f"explained:  {out}/<method>/<machine>/explain/ (each section's 3 highest-scoring test clips)")
    if not table.methods():
        return lines
    scored = [m for m in table.methods() if table.official_score(m) is not None]
    if not scored:  # every official score is n/a: no "best" to point at
        return lines
    best = max(scored, key=table.official_score)
    known = [x for x in table.machines(best) if table.machine_summary(best, x).hmean is not None]
    machine = max(known, key=lambda x: table.machine_summary(best, x).hmean)
    det = out / best / machine / "detector.pt"
    clips = _test_folder(data_root, machine) if data_root is not None else None
    return lines + [f"best method: {best} (official score {_pct(table.official_score(best))}); "
                    f"its best detector: {machine} ({_pct(table.machine_summary(best, machine).hmean)})",
                    f"  dgmix score {det} {clips if clips else 'CLIPS...'} --csv scores.csv --explain explained/",
                    f"  dgmix serve {det}"]
