"""The run report: ``dgmix report RUN_DIR`` / the end of ``dgmix run`` write one
self-contained ``report.html`` (:func:`dgmix.report.build.build_report`). ``dgmix.report.inputs``
holds what the pipeline saves for it; matplotlib is imported only when a report is built.

The paper gives no t-SNE or histogram settings (its Figure 2, §4.2, shows a t-SNE of DG-Mix beside
VICReg on ToyCar), so these constants are our choice.
"""

from __future__ import annotations

from pathlib import Path

#: Training clips kept per method and machine type for the t-SNE plots (evenly over section x domain).
TSNE_MAX_POINTS = 500
#: t-SNE perplexity (capped below a third of the points, :func:`dgmix.report.figures.tsne_points`).
TSNE_PERPLEXITY = 30.0
#: Bins of each score histogram.
HISTOGRAM_BINS = 20


def build_report(run_dir: Path, cfg=None, out: Path | None = None, seed: int = 0,
                 paper: bool | None = None) -> Path:
    """See :func:`dgmix.report.build.build_report`."""
    from dgmix.report.build import build_report as _build

    return _build(run_dir, cfg, out, seed, paper)


__all__ = ["HISTOGRAM_BINS", "TSNE_MAX_POINTS", "TSNE_PERPLEXITY", "build_report"]
