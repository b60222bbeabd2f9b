"""The report's figures (matplotlib, Agg backend), each returned as a PNG ``data:`` URI.

* :func:`roc_figure`: ROC curves of every method per section and domain, with the clip selection
  of the official AUCs (source: source normals + all anomalies; target likewise), so that the area
  under each curve is the table's AUC;
* :func:`histogram_figure`: score histograms, normal vs anomaly, per section and domain, with the
  section's decision threshold;
* :func:`tsne_figure`: t-SNE of training clip embeddings, one column per method, one row per
  colouring (section, domain, attribute) - the paper's Figure 2 (§4.2), method beside method;
* :func:`curves_figure`: one training stage's loss terms and embedding std per step.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from dgmix.report.collect import SectionScores  # noqa: E402
from dgmix.report.inputs import TrainEmbeddings  # noqa: E402

#: Log fields that are not loss terms or embedding statistics.
_NOT_PLOTTED = {"epoch", "step", "lr", "windows_per_s", "seconds"}
_DPI = 80
_MAX_LEGEND = 12


def to_data_uri(fig: Figure) -> str:
    """The figure as a base64 PNG ``data:`` URI (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colors(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _label(ax, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
           size: float = 9) -> None:
    """Title at ``size``, axis labels one point smaller, tick labels two points smaller."""
    if title:
        ax.set_title(title, fontsize=size)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=size - 1)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=size - 1)
    ax.tick_params(labelsize=size - 2)


def _finish(fig: Figure, title: str | None = None, size: float = 10) -> Figure:
    if title:
        fig.suptitle(title, fontsize=size)
    fig.tight_layout()
    return fig


def roc_figure(machine: str, by_method: Mapping[str, Mapping[str, SectionScores]]) -> Figure:
    """Rows: source, target; columns: sections; one curve per method (legend: its AUC)."""
    sections = sorted({s for secs in by_method.values() for s in secs})
    fig, axes = plt.subplots(2, len(sections), figsize=(max(3.6 * len(sections), 6.0), 7.0), squeeze=False)
    colors = dict(zip(by_method, _colors(len(by_method))))
    for col, sec in enumerate(sections):
        for row, (dom, flag) in enumerate((("source", False), ("target", True))):
            ax = axes[row][col]
            for method, secs in by_method.items():
                s = secs.get(sec)
                if s is None:
                    continue
                sel = (s.is_target == flag) | s.is_anomaly
                y, sc = s.is_anomaly[sel].astype(int), s.scores[sel]
                if y.size == 0 or y.min() == y.max():  # a domain without normals or anomalies: no curve
                    continue
                fpr, tpr, _ = roc_curve(y, sc)
                ax.plot(fpr, tpr, color=colors[method], lw=1.4,
                        label=f"{method} {100 * roc_auc_score(y, sc):.1f}")
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
            ax.set(xlim=(0, 1), ylim=(0, 1.01))
            _label(ax, f"{machine} section {sec}, {dom}", "false positive rate",
                   "true positive rate" if col == 0 else None)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="lower right", title="AUC %", title_fontsize=7)
            else:
                ax.text(0.5, 0.5, "n/a: no normal or no anomalous clip", ha="center", va="center", fontsize=7)
    return _finish(fig)


def histogram_figure(machine: str, by_method: Mapping[str, Mapping[str, SectionScores]], bins: int = 20) -> Figure:
    """Rows: methods; columns: section x domain; normal vs anomaly, threshold as a dashed line."""
    sections = sorted({s for secs in by_method.values() for s in secs})
    cols = [(sec, dom) for sec in sections for dom in ("source", "target")]
    fig, axes = plt.subplots(len(by_method), len(cols), figsize=(2.3 * len(cols), 1.9 * len(by_method) + 0.4),
                             squeeze=False)
    for row, (method, secs) in enumerate(by_method.items()):
        for col, (sec, dom) in enumerate(cols):
            ax, s = axes[row][col], secs.get(sec)
            _label(ax, f"section {sec}, {dom}" if row == 0 else None, ylabel=method if col == 0 else None, size=8)
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))
            in_dom = None if s is None else s.is_target == (dom == "target")
            if s is None or not in_dom.any():
                ax.set_axis_off()
                continue
            thr = s.threshold if s.threshold is not None and np.isfinite(s.threshold) else None
            vals = s.scores[in_dom] if thr is None else np.append(s.scores[in_dom], thr)
            lo, hi = float(vals.min()), float(vals.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            ax.hist(s.scores[in_dom & ~s.is_anomaly], bins=edges, color="tab:blue", alpha=0.6, label="normal")
            ax.hist(s.scores[in_dom & s.is_anomaly], bins=edges, color="tab:red", alpha=0.6, label="anomaly")
            if thr is not None:
                ax.axvline(thr, color="black", ls="--", lw=1.0, label="threshold")
            if row == 0 and col == 0:
                ax.legend(fontsize=6)
    return _finish(fig, f"{machine}: test scores, normal vs anomaly, with the decision threshold")


def tsne_points(emb: np.ndarray, perplexity: float, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (sklearn, PCA init) of ``emb``; perplexity capped below a third of the points."""
    from sklearn.manifold import TSNE

    n = emb.shape[0]
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {n}")
    x = emb.astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)  # learned embeddings can be nearly collapsed (docs/results.md §5.3)
    return TSNE(n_components=2, perplexity=float(min(perplexity, (n - 1) / 3.0)), init="pca",
                random_state=seed).fit_transform(x)


def tsne_figure(machine: str, points: Mapping[str, np.ndarray], labels: Mapping[str, TrainEmbeddings]) -> Figure:
    """Columns: methods; rows: coloured by section, domain, attribute."""
    methods = list(points)
    keys = ("section", "domain", "attribute")
    fig, axes = plt.subplots(len(keys), len(methods), figsize=(3.0 * len(methods) + 1.5, 8.4), squeeze=False)
    for col, method in enumerate(methods):
        p = points[method]
        for row, key in enumerate(keys):
            ax, lab = axes[row][col], np.asarray(getattr(labels[method], key)).astype(str)
            values = sorted(set(lab.tolist()))
            for v, c in zip(values, _colors(len(values))):
                ax.scatter(p[lab == v, 0], p[lab == v, 1], s=9, color=c, label=v, linewidths=0)
            ax.set(xticks=[], yticks=[])
            _label(ax, method if row == 0 else None, ylabel=f"by {key}" if col == 0 else None, size=10)
            if col == len(methods) - 1 and len(values) <= _MAX_LEGEND:
                ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
                          markerscale=1.5)
            elif col == len(methods) - 1:
                ax.text(1.03, 0.5, f"{len(values)} values", transform=ax.transAxes, fontsize=7, va="center")
    return _finish(fig, f"{machine}: t-SNE of training clip embeddings", 11)


def _is_number(v) -> bool:
    """An int, float or numeric string (a log may write ``"nan"``)."""
    try:
        float(v)  # TypeError for anything that is not a number or a string
    except (TypeError, ValueError):
        return False
    return True


def plotted_terms(records_by_machine: Mapping[str, Sequence[Mapping]]) -> list[str]:
    """The numeric fields of a stage's log that are loss terms or embedding statistics."""
    terms = dict.fromkeys(k for recs in records_by_machine.values() for r in recs for k, v in r.items()
                          if k not in _NOT_PLOTTED and _is_number(v))
    order = ["loss"] + [t for t in terms if t not in ("loss", "embedding_std")] + ["embedding_std"]
    return [t for t in order if t in terms]


def curves_figure(title: str, records_by_machine: Mapping[str, Sequence[Mapping]]) -> Figure:
    """One panel per term (loss, its parts, embedding std), one line per machine type, x = step."""
    terms = plotted_terms(records_by_machine)
    ncol = min(4, max(1, len(terms)))
    nrow = -(-len(terms) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.5 * nrow + 0.4), squeeze=False)
    colors = dict(zip(records_by_machine, _colors(len(records_by_machine))))
    for i, term in enumerate(terms):
        ax = axes[i // ncol][i % ncol]
        for machine, recs in records_by_machine.items():
            pts = [(r.get("step", j + 1), float(r[term])) for j, r in enumerate(recs) if term in r]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, color=colors[machine], lw=1.1, label=machine)
        _label(ax, term, "step")
        if i == 0:
            ax.legend(fontsize=6.5)
    for j in range(len(terms), nrow * ncol):
        axes[j // ncol][j % ncol].set_axis_off()
    return _finish(fig, title)
