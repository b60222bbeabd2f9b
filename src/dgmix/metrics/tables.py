"""Results tables laid out like the paper's Tables 2-3, and the paper's own numbers.

``ResultsTable`` holds ``method -> machine -> section -> SectionResult`` and writes

* ``results.md``: one markdown table per method, rows = machine types + "Overall", columns = AUC
  Source, AUC Target, pAUC, Harmonic Mean, in percent with 2 decimals (optionally followed by the
  paper's rows for the same method), then a per-section detail table;
* ``results.csv``: long format ``method,machine,section,auc_source,auc_target,pauc,hmean`` with a
  header, fractions; besides one row per section it has one row per machine with section ``all``
  (the machine's summary row) and one row with machine ``overall``, section ``all``;
* ``results.json``: ``{method: {machine: {section: {auc_source, auc_target, pauc, auc_all, ...}},
  "official_score": float, "official_score_values": {...}}}``, fractions in [0, 1] (decision
  metrics are added when present), plus ``"official_score_ci95"`` (jackknife interval,
  :mod:`dgmix.metrics.confidence`) when known.

A value that could not be computed because its section's test set lacks a group
(:mod:`dgmix.metrics.dcase`) prints as ``n/a`` in results.md and results.csv and is ``null`` in
results.json, where the section also lists its ``empty_groups``; every harmonic mean is over the
values that exist. results.md says under each method's table, and results.json under
``official_score_values`` (``n_values`` of ``n_expected``, ``left_out``), which values the official
score averages over.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_text

from .confidence import JackknifeCI
from .dcase import _LABELS, SectionResult, Summary, machine_summary, official_score, official_values, overall_summary

__all__ = ["MACHINE_ORDER", "PAPER_RESULTS", "ResultsTable", "official_values_text", "paper_row"]

#: Machine types in the order of the paper's tables (DCASE directory spelling).
MACHINE_ORDER = ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")

_COLS = ("auc_source", "auc_target", "pauc", "hmean")
_HEAD = ("AUC Source", "AUC Target", "pAUC", "Harmonic Mean")


def _paper_results() -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    text = resources.files("dgmix.metrics").joinpath("paper_results.csv").read_text(encoding="utf-8")
    for row in csv.DictReader(io.StringIO(text)):
        out.setdefault(row["method"], {})[row["machine"]] = {c: round(float(row[c]) / 100.0, 6) for c in _COLS}
    return out


#: The paper's Tables 2-3 (DCASE 2022 development set), as fractions, from ``paper_results.csv``
#: (percent, as printed): ``PAPER_RESULTS[method][machine] = {auc_source, auc_target, pauc, hmean}``
#: with machine keys in DCASE spelling (``MACHINE_ORDER``) plus ``"overall"``. Methods: ``baseline``
#: (official MobileNetV2 baseline), ``scratch`` (proposed method without pre-training), ``vicreg``
#: (VICReg with SpecAugment, then fine-tuning) and ``dgmix``. Transcribed as printed; note that the
#: paper's ``scratch`` "Overall" row (72.71 / 70.93 / 62.27 / 68.32) is not the harmonic mean of its
#: machine rows (that would be 70.22 / 67.87 / 58.71 / 65.21), while the other three methods'
#: overall rows are consistent with their machine rows to 0.01.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = _paper_results()


def _find_row(rows: Mapping[str, Mapping[str, float]], machine: str) -> Mapping[str, float] | None:
    return next((row for key, row in rows.items() if key.lower() == machine.lower()), None)


def paper_row(method: str, machine: str) -> dict[str, float] | None:
    """The paper's row for ``method`` and ``machine`` (case-insensitive machine), or ``None``."""
    return _find_row(PAPER_RESULTS.get(method, {}), machine)


def _machine_sort_key(machine: str) -> tuple[int, str]:
    lower = [m.lower() for m in MACHINE_ORDER]
    return (lower.index(machine.lower()), "") if machine.lower() in lower else (len(lower), machine)


NA = "n/a"


def _pct(v: float | None) -> str:
    return NA if v is None else f"{100.0 * v:.2f}"


def _frac(v: float | None) -> str:
    return NA if v is None else f"{v:.6f}"


def official_values_text(results: Mapping[str, Mapping[str, SectionResult]]) -> str:
    """``over 21 of 21 values`` or ``over 10 of 21 values; n/a, left out: ToyTrain 00 AUC-S (no
    source-domain normal test clips); ...``: which values the official score averages over."""
    info = official_values(results)
    parts = [f"{m} {sec} {', '.join(_LABELS[k] for k in r.missing)} (no {' and no '.join(r.empty_groups)} test clips)"
             for m in sorted(results, key=_machine_sort_key) for sec, r in sorted(results[m].items()) if r.missing]
    left_out = "; n/a, left out: " + "; ".join(parts) if parts else ""
    return f"over {info['n_values']} of {info['n_expected']} values{left_out}"


def _cells(row: SectionResult | Summary, fmt=_pct) -> list[str]:
    return [fmt(getattr(row, c)) for c in _COLS]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def _mapping(value: object, source: str | Path, problem: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InputError(source, problem)
    return value


class ResultsTable:
    """Per-method, per-machine, per-section results with paper-style summaries."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, dict[str, SectionResult]]] = {}
        #: method -> jackknife 95 % interval of its official score, when known
        self.ci: dict[str, JackknifeCI] = {}
        #: method -> machine -> why its detector failed the health check (dgmix.scoring.health)
        self.degenerate: dict[str, dict[str, str]] = {}
        #: the run's test clips, ``{"found", "scored", "skipped", ...}`` (set by ``dgmix run``; every
        #: method saw the same clips), written into results.json under each method
        self.test_clips: dict[str, Any] | None = None

    # -- filling ---------------------------------------------------------------------------
    def add(self, method: str, machine: str, section: str, result: SectionResult) -> None:
        """Store one section's result (section as a 2-digit string, e.g. ``"00"``)."""
        section = f"{int(section):02d}" if str(section).isdigit() else str(section)
        self.results.setdefault(method, {}).setdefault(machine, {})[section] = result

    def set_ci(self, method: str, ci: JackknifeCI) -> None:
        """Attach the official score's confidence interval (:func:`dgmix.metrics.confidence.official_score_ci`)."""
        self.ci[method] = ci

    def add_machine(self, method: str, machine: str, sections: Mapping[str, SectionResult]) -> None:
        for sec, res in sections.items():
            self.add(method, machine, sec, res)

    def mark_degenerate(self, method: str, machine: str, reason: str) -> None:
        """Record that ``method``'s detector for ``machine`` failed the health check."""
        self.degenerate.setdefault(method, {})[machine] = reason

    # -- queries -----------------------------------------------------------------------------
    def methods(self) -> list[str]:
        return list(self.results)

    def machines(self, method: str) -> list[str]:
        """The method's machine types in the paper's order (others after, sorted)."""
        return sorted(self.results[method], key=_machine_sort_key)

    def sections(self, method: str, machine: str) -> dict[str, SectionResult]:
        return dict(sorted(self.results[method][machine].items()))

    def machine_summary(self, method: str, machine: str) -> Summary:
        return machine_summary(self.results[method][machine])

    def overall(self, method: str) -> Summary:
        return overall_summary(self.results[method])

    def official_score(self, method: str) -> float:
        return official_score(self.results[method])

    # -- rendering -----------------------------------------------------------------------------
    def to_markdown(self, paper: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
                    details: bool = True) -> str:
        """Markdown: per method, the paper-style table (percent, 2 decimals).

        ``paper`` maps method -> machine (or ``"overall"``) -> {auc_source, auc_target, pauc, hmean}
        fractions (e.g. :data:`PAPER_RESULTS`); rows present for the method are printed in a second
        table headed "paper" for comparison. ``details`` adds a per-section table.
        """
        parts: list[str] = []
        for method in self.methods():
            parts += [f"## {method}\n", *self._summary_md(method)]
            if paper is not None and (ref := paper.get(method)):
                parts += self._paper_md(method, ref)
            if details:
                parts += self._details_md(method)
        return "\n".join(parts).rstrip() + "\n"

    def _summary_md(self, method: str) -> list[str]:
        rows = [[m, *_cells(self.machine_summary(method, m))] for m in self.machines(method)]
        rows.append(["**Overall**", *(f"**{c}**" for c in _cells(self.overall(method)))])
        ci = self.ci.get(method)
        ci_txt = f" (95 % CI ± {_pct(ci.half_width)}, jackknife over {ci.n} test clips)" if ci is not None else ""
        return [_md_table(["Machine", *_HEAD], rows),
                f"\nOfficial score (hmean of all AUC-S, AUC-T, pAUC): {_pct(self.official_score(method))}{ci_txt}, "
                f"{official_values_text(self.results[method])}\n",
                *(f"**Degenerate detector** ({m}): {why}.\n"
                  for m, why in sorted(self.degenerate.get(method, {}).items()))]

    def _paper_md(self, method: str, ref: Mapping[str, Mapping[str, float]]) -> list[str]:
        rows = []
        for machine in self.machines(method) + ["overall"]:
            if (row := _find_row(ref, machine)) is not None:
                mine = self.overall(method) if machine == "overall" else self.machine_summary(method, machine)
                delta = NA if mine.hmean is None else f"{100.0 * (mine.hmean - row['hmean']):+.2f}"
                rows.append([machine, *(_pct(row[c]) for c in _COLS), delta])
        if not rows:
            return []
        return ["Paper (reference rows):\n", _md_table(["Machine", *_HEAD, "Δ Harmonic Mean"], rows) + "\n"]

    def _details_md(self, method: str) -> list[str]:
        secs = {m: self.sections(method, m) for m in self.machines(method)}
        any_dec = any(r.has_decisions for s in secs.values() for r in s.values())
        rows = []
        for m, s in secs.items():
            for sec, r in s.items():
                dec = [_pct(r.f1_source), _pct(r.f1_target)] if r.has_decisions else ["", ""]
                rows.append([m, sec, *_cells(r), *(dec if any_dec else [])])
        head = ["Machine", "Section", *_HEAD] + (["F1 Source", "F1 Target"] if any_dec else [])
        return [f"Per section, {method}:\n", _md_table(head, rows) + "\n"]

    def to_csv(self) -> str:
        """Long-format CSV (module docstring), fractions with 6 decimals."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["method", "machine", "section", *_COLS])
        for method in self.methods():
            for machine in self.machines(method):
                for sec, r in self.sections(method, machine).items():
                    w.writerow([method, machine, sec, *_cells(r, _frac)])
                w.writerow([method, machine, "all", *_cells(self.machine_summary(method, machine), _frac)])
            w.writerow([method, "overall", "all", *_cells(self.overall(method), _frac)])
        return buf.getvalue()

    def to_json_dict(self) -> dict:
        """``{method: {machine: {section: metrics}, "official_score": float | None,
        "official_score_values": {"n_values", "n_expected", "left_out"}}}`` (fractions)."""
        out: dict = {}
        for method in self.methods():
            secs = {m: self.sections(method, m) for m in self.machines(method)}
            d: dict = {m: {sec: r.as_dict() for sec, r in s.items()} for m, s in secs.items()}
            d["official_score"] = self.official_score(method)
            if method in self.ci:
                d["official_score_ci95"] = self.ci[method].as_dict()
            d["official_score_values"] = official_values(secs)
            if self.degenerate.get(method):
                d["degenerate_detectors"] = dict(sorted(self.degenerate[method].items()))
            if self.test_clips is not None:
                d["test_clips"] = dict(self.test_clips)
            out[method] = d
        return out

    def write(self, out_dir: str | Path, paper: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None
              ) -> dict[str, Path]:
        """Write results.md, results.csv and results.json into ``out_dir`` (created)."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(out, f"cannot create the output folder ({e.strerror})") from e
        texts = {"md": self.to_markdown(paper), "csv": self.to_csv(),
                 "json": json.dumps(self.to_json_dict(), indent=2) + "\n"}
        return {k: atomic_write_text(out / f"results.{k}", text) for k, text in texts.items()}

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_json_dict(cls, data: Mapping, source: str | Path = "<results.json>") -> ResultsTable:
        """Rebuild a table from :meth:`to_json_dict` output (``official_score*`` keys skipped)."""
        table = cls()
        for method, machines in _mapping(data, source, "results JSON must be an object mapping method names").items():
            for machine, secs in _mapping(machines, source, f"method {method!r} must map machine names").items():
                if machine.startswith("official_score") or machine in ("degenerate_detectors", "test_clips"):
                    continue
                for sec, vals in _mapping(secs, source, f"{method}/{machine} must map section ids").items():
                    try:
                        table.add(method, machine, sec, SectionResult.from_dict(vals))
                    except (TypeError, ValueError) as e:
                        raise InputError(source, f"{method}/{machine}/{sec}: {e}") from e
        return table

    @classmethod
    def read_json(cls, path: str | Path) -> ResultsTable:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise InputError(p, "file not found") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(p, f"not a readable JSON file ({e})") from e
        return cls.from_json_dict(data, p)
