"""``dgmix serve``: a saved detector behind an HTTP API (extra ``[serve]``: FastAPI + uvicorn).

:mod:`dgmix.serve.service` is the request logic without the framework, :mod:`dgmix.serve.app` the
FastAPI application, :func:`run_server` what the CLI verb calls.
"""

from __future__ import annotations

from pathlib import Path


def run_server(detector: Path, host: str = "127.0.0.1", port: int = 8000, max_bytes: int | None = None,
               log_level: str = "info") -> None:
    """Load ``detector`` and serve it with uvicorn until interrupted."""
    from dgmix.extras import require
    from dgmix.scoring.clips import load_detector
    from dgmix.serve.app import create_app
    from dgmix.serve.service import DEFAULT_MAX_BYTES, ScoringService

    require("fastapi", "serve", "dgmix serve")  # before the detector loads: a missing extra fails fast
    uvicorn = require("uvicorn", "serve", "dgmix serve")
    service = ScoringService(load_detector(detector), detector,
                             DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level)
