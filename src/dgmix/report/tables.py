"""The report's HTML tables: the method x machine summary, the paper-style table per method (with
the paper's Tables 2-3 beside it when they apply) and the per-section details."""

from __future__ import annotations

from html import escape

from dgmix.metrics.tables import ResultsTable, paper_row

_COLS = ("auc_source", "auc_target", "pauc", "hmean")
_HEAD = ("AUC Source", "AUC Target", "pAUC", "Harmonic Mean")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100.0 * v:.2f}"


def html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def all_machines(table: ResultsTable) -> list[str]:
    """Every method's machine types, in the order they first appear."""
    return list(dict.fromkeys(x for m in table.methods() for x in table.machines(m)))


def summary_table(table: ResultsTable) -> str:
    """Method x machine type harmonic mean, then the official score (all in %); best per column bold."""
    machines = all_machines(table)
    vals = {m: {x: table.machine_summary(m, x).hmean for x in table.machines(m)} for m in table.methods()}
    official = {m: table.official_score(m) for m in table.methods()}
    best = {x: max((vals[m][x] for m in vals if vals[m].get(x) is not None), default=None) for x in machines}
    best_off = max((v for v in official.values() if v is not None), default=None)
    rows = []
    for m in table.methods():
        cells = [escape(m)]
        for x in machines:
            v = vals[m].get(x)
            cells.append("" if x not in vals[m] else (f"<b>{_pct(v)}</b>" if v is not None and v == best[x]
                                                      else _pct(v)))
        o = official[m]
        cells.append(f"<b>{_pct(o)}</b>" if o is not None and o == best_off else _pct(o))
        rows.append(cells)
    return html_table(["method", *machines, "official score"], rows, "num")


def method_table(table: ResultsTable, method: str, paper: bool) -> str:
    """Paper-style rows (machine types + Overall); with ``paper``, the paper's row and Δ beside."""
    ref_head = ["paper Harmonic Mean", "Δ"] if paper else []
    rows = []
    for machine in table.machines(method) + ["overall"]:
        s = table.overall(method) if machine == "overall" else table.machine_summary(method, machine)
        cells = [("<b>Overall</b>" if machine == "overall" else escape(machine))]
        cells += [_pct(getattr(s, c)) for c in _COLS]
        if paper:
            ref = paper_row(method, machine)
            delta = "" if not ref or s.hmean is None else f"{100.0 * (s.hmean - ref['hmean']):+.2f}"
            cells += [_pct(ref["hmean"]), delta] if ref else ["", ""]
        rows.append(cells)
    return html_table(["machine", *_HEAD, *ref_head], rows, "num")


def section_table(table: ResultsTable, method: str) -> str:
    rows = []
    any_dec = any(r.has_decisions for secs in table.results[method].values() for r in secs.values())
    for machine in table.machines(method):
        for sec, r in table.sections(method, machine).items():
            dec = ([_pct(r.f1_source), _pct(r.f1_target)] if r.has_decisions else ["", ""]) if any_dec else []
            rows.append([escape(machine), sec, *(_pct(getattr(r, c)) for c in _COLS), *dec])
    head = ["machine", "section", *_HEAD] + (["F1 Source", "F1 Target"] if any_dec else [])
    return html_table(head, rows, "num")
