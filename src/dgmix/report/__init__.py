"""The run report: ``dgmix report RUN_DIR`` / the end of ``dgmix run`` write one
self-contained ``report.html`` (:func:`dgmix.report.build.build_report`). ``dgmix.report.inputs``
holds what the pipeline saves for it; matplotlib is imported only when a report is built."""

from __future__ import annotations

from pathlib import Path


def build_report(run_dir: Path, cfg=None, out: Path | None = None, seed: int = 0) -> Path:
    """See :func:`dgmix.report.build.build_report`."""
    from dgmix.report.build import build_report as _build

    return _build(run_dir, cfg, out, seed)


__all__ = ["build_report"]
