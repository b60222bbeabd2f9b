"""``report.html``: one self-contained page (CSS inline, figures as base64 PNG) for a run directory."""

from __future__ import annotations

from html import escape
from pathlib import Path

from dgmix.config import ReportConfig
from dgmix.errors import InputError
from dgmix.metrics.tables import PAPER_RESULTS
from dgmix.report import HISTOGRAM_BINS, TSNE_PERPLEXITY
from dgmix.report.collect import STAGES, RunContents, collect
from dgmix.report.tables import method_table, section_table, summary_table

REPORT_FILE = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1250px;
padding:0 1em;color:#222;line-height:1.4}h1{font-size:1.6em;margin-bottom:.2em}h3{margin-bottom:.3em}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}th{background:#f3f3f3}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em}
table.num td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.4em 0 1em}.meta{color:#555;font-size:.9em}.note{color:#8a5a00}
nav a{margin-right:1em}details{margin:.3em 0 1em}summary{cursor:pointer;color:#225}
"""


def _figure(title: str, fig, alt: str | None = None) -> str:
    """A heading and the figure as an embedded PNG."""
    from dgmix.report.figures import to_data_uri

    return f'<h3>{escape(title)}</h3><img src="{to_data_uri(fig)}" alt="{escape(alt or title)}">'


def _results_section(rc: RunContents, paper: bool) -> list[str]:
    t = rc.table
    if t is None or not t.methods():
        return ["<h2 id='results'>Results</h2><p>No evaluated section (results.json missing or empty).</p>"]
    out = ["<h2 id='results'>Results</h2>",
           "<p>Harmonic mean of AUC-S, AUC-T and pAUC per machine type, and the official score (harmonic "
           "mean over every section's three AUCs), in %. Best per column in bold.</p>", summary_table(t)]
    if paper:
        out.append("<p>The paper's numbers (Tables 2-3, DCASE 2022 development set) are shown beside ours.</p>")
    for m in t.methods():
        out += [f"<h3>{escape(m)}</h3>", method_table(t, m, paper and m in PAPER_RESULTS),
                f"<details><summary>per section, {escape(m)}</summary>{section_table(t, m)}</details>"]
    return out


def _figure_sections(rc: RunContents, cfg: ReportConfig, seed: int) -> list[str]:
    from dgmix.report.figures import curves_figure, histogram_figure, roc_figure, tsne_figure, tsne_points

    scored = {machine: by_method for machine in rc.machines
              if (by_method := {m: rc.scores[m][machine] for m in rc.methods if machine in rc.scores.get(m, {})})}
    out = ["<h2 id='roc'>ROC curves</h2>",
           "<p>Per section and domain; each curve uses the clips of the official AUC (the domain's normal "
           "clips and all anomalies), so its area is the table's AUC (legend).</p>"]
    out += [_figure(machine, roc_figure(machine, by), f"ROC {machine}") for machine, by in scored.items()]
    out += ["<h2 id='hist'>Score histograms</h2>",
            "<p>Test scores per section and domain, normal (blue) vs anomaly (red); the dashed line is the "
            "section's decision threshold (90th percentile of a gamma fit to the training scores).</p>"]
    out += [_figure(machine, histogram_figure(machine, by, HISTOGRAM_BINS), f"histograms {machine}")
            for machine, by in scored.items()]
    out += ["<h2 id='tsne'>t-SNE of training embeddings</h2>",
            "<p>Clip embeddings of the training clips (each method's own pooling), standardised per "
            "dimension, t-SNE (sklearn, PCA initialisation); the paper's Figure 2 shows DG-Mix beside VICReg "
            "on ToyCar.</p>"]
    if not cfg.tsne:
        out.append("<p>Off (<code>report.tsne: false</code>).</p>")
    for machine in rc.machines if cfg.tsne else []:
        points, labels = {}, {}
        for m, e in rc.embeddings.get(machine, {}).items():
            try:
                points[m], labels[m] = tsne_points(e.embeddings, TSNE_PERPLEXITY, seed), e
            except ValueError as exc:
                rc.notes.append(f"t-SNE {m}/{machine}: {exc}")
        if points:
            out.append(_figure(machine, tsne_figure(machine, points, labels), f"t-SNE {machine}"))
    out += ["<h2 id='training'>Training curves</h2>",
            "<p>Every logged loss term and the embedding standard deviation (mean over dimensions of the "
            "batch std; a collapse shows as a fall to 0), per step, one line per machine type.</p>"]
    for method in rc.methods:
        for stage in STAGES:
            if logs := rc.logs.get((method, stage)):
                out.append(_figure(f"{method}: {stage}", curves_figure(f"{method}: {stage}", logs)))
    return out


def _explanation_section(run_dir: Path, rc: RunContents) -> list[str]:
    """Each section's highest-scoring test clips, explained (:func:`dgmix.report.maps.keep_explanations`)."""
    import base64

    from dgmix.report.maps import EXPLAIN_DIR, TOP_CLIPS, read_explanations

    out = ["<h2 id='explain'>Why the top clips score high</h2>",
           f"<p>The {TOP_CLIPS} highest-scoring test clips of each section, per method: the log-mel spectrogram "
           "with what drives the score over it (red: raises it; pooled log-mel detectors, per band and frame) and "
           "its total per frame below (learned detectors: each window's own score). <code>dgmix score --explain "
           "DIR</code> draws the same for any clip.</p>"]
    shown = 0
    for machine in rc.machines:
        for k, method in enumerate(rc.methods):
            folder = Path(run_dir) / method / machine
            entries = read_explanations(folder)
            if not entries:
                continue
            imgs = []
            for e in entries:
                png = folder / EXPLAIN_DIR / e["png"]
                if not png.is_file():
                    continue
                uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
                bands = ", ".join(f"{lo:.0f}-{hi:.0f} Hz" for lo, hi in e["bands_hz"]) or "-"
                imgs.append(f'<figure style="display:inline-block;width:32%;margin:0 .5% .5em 0;vertical-align:top">'
                            f'<img src="{uri}" alt="{escape(e["clip"])}">'
                            '<figcaption style="font-size:.8em;overflow-wrap:anywhere">'
                            f'section {escape(e["section"])} #{e["rank"]}: {escape(e["clip"])}<br>bands {bands}'
                            '</figcaption></figure>')
            if imgs:
                shown += 1
                opened = " open" if k == 0 else ""
                out.append(f"<details{opened}><summary>{escape(machine)}: {escape(method)}</summary>"
                           + "".join(imgs) + "</details>")
    if not shown:
        out.append("<p>No explanations in this run (they are kept when the report is on).</p>")
    return out


def build_report(run_dir: Path, cfg: ReportConfig | None = None, out: Path | None = None, seed: int = 0,
                 paper: bool | None = None) -> Path:
    """Write ``out`` (default ``RUN_DIR/report.html``) for the run in ``run_dir``; return its path.

    ``paper``: show the paper's Tables 2-3 beside ours; ``None`` follows the run, i.e. the
    ``paper_reference`` flag ``dgmix run --paper-reference/--no-paper-reference`` recorded in
    ``run_info.json``.

    Raises:
        InputError: not a run directory, unreadable inputs, or the file cannot be written.
    """
    cfg = cfg or ReportConfig()
    rc = collect(Path(run_dir))
    info = rc.info
    # the paper's numbers: as asked, else as the run recorded (dgmix run --paper-reference)
    paper = rc.table is not None and bool(info.get("paper_reference", False) if paper is None else paper)
    meta = [f"run directory: <code>{escape(str(Path(run_dir).resolve()))}</code>"]
    if info.get("data_root"):
        meta.append(f"data: <code>{escape(info['data_root'])}</code>")
    if rc.config.get("preset"):
        meta.append(f"preset: <code>{escape(str(rc.config['preset']))}</code>")
    if info.get("seconds") is not None:
        meta.append(f"pipeline time: {info['seconds']:.1f} s")
    body = ["<h1>dgmix run report</h1>", f"<p class='meta'>{' · '.join(meta)}</p>",
            "<nav><a href='#results'>Results</a><a href='#roc'>ROC</a><a href='#hist'>Histograms</a>"
            "<a href='#tsne'>t-SNE</a><a href='#training'>Training</a><a href='#explain'>Explanations</a></nav>"]
    body += _results_section(rc, paper)
    body += _figure_sections(rc, cfg, seed)
    body += _explanation_section(run_dir, rc)
    if rc.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li class='note'>{escape(n)}</li>" for n in rc.notes) + "</ul>")
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>dgmix report: {escape(Path(run_dir).resolve().name)}</title><style>{_CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot write the report ({e.strerror})") from None
    return path
