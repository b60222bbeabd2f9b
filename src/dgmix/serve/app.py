"""The HTTP API of ``dgmix serve`` (FastAPI; extra ``[serve]``): ``POST /score``, ``GET /health``, ``GET /info``.

``POST /score`` takes a WAV either as a multipart upload (field ``file``; an optional form field
``section``) or as the raw request body (any other content type), and answers
``{score, decision, threshold, p_value, section, method}`` (``p_value``: the conformal p-value of
the score against the section's normal training clips, :mod:`dgmix.scoring.conformal`);
``explain=1`` adds ``explanation``, the strongest bands (Hz) and times (s) behind the score
(:mod:`dgmix.scoring.explain`). The section comes from the ``section`` query
parameter (or form field), else from the file name: the multipart file name or the ``filename``
query parameter, read by the same rules as ``dgmix score``. ``pad=true`` zero-pads a clip shorter
than one window (as ``dgmix score --pad``). Errors are JSON ``{"error": message}``
with 413 (body over the limit), 415 (not a WAV), 422 (a WAV that cannot be scored), 400 (a
malformed multipart body, or one without a ``file`` field); see :mod:`dgmix.serve.service`.

The size limit is enforced while the body is read: a declared ``Content-Length`` over it is refused
before reading, and a streamed body is cut off as soon as it passes it (a multipart body may be
:data:`MULTIPART_OVERHEAD` bytes longer, for its boundaries and part headers; the file inside it is
held to the limit exactly). Scoring runs in a worker thread so the event loop keeps answering.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at run time,
# and ``Request`` is imported inside create_app (the [serve] extra is imported lazily).
from collections.abc import AsyncIterator
from typing import Any

from dgmix import __version__
from dgmix.extras import require
from dgmix.serve.service import ScoringService, ServeError

#: Bytes a multipart body may carry beyond the file size limit (boundaries, part headers, fields).
MULTIPART_OVERHEAD = 64 * 1024


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Yield the chunks of ``stream``; a ServeError(413) once more than ``limit`` bytes came."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise ServeError(413, f"request body over the limit of {limit} bytes")
        yield chunk


def create_app(service: ScoringService) -> Any:
    """A FastAPI application serving ``service`` (module docstring)."""
    require("fastapi", "serve", "dgmix serve")
    require("python_multipart", "serve", "dgmix serve", package="python-multipart")  # multipart uploads
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.formparsers import MultiPartException, MultiPartParser

    app = FastAPI(title="dgmix detector", version=__version__,
                  description=f"{service.detector.method} detector for {service.detector.machine}")

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        first = " ".join(str(exc).split())[:300]
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {first}"}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "method": service.detector.method, "machine": service.detector.machine}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return service.info()

    @app.post("/score")
    async def score(request: Request, section: str | None = None, filename: str | None = None,
                    pad: bool | None = None, explain: bool = False) -> dict[str, Any]:
        multipart = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
        limit = service.max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ServeError(413, f"request body of {declared} bytes is over the limit of {limit} bytes")
        body = _capped(request.stream(), limit)
        if multipart:
            try:
                form = await MultiPartParser(request.headers, body, max_files=1, max_fields=8).parse()
            except MultiPartException as exc:
                raise ServeError(400, f"bad multipart body: {exc.message}") from None
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ServeError(400, "multipart body has no file field named 'file'")
            data = await upload.read()
            await upload.close()
            filename = upload.filename or filename
            if section is None and isinstance(form.get("section"), str):
                section = form.get("section") or None
        else:
            data = b"".join([chunk async for chunk in body])
        return await run_in_threadpool(service.score_bytes, data, filename, section, pad, explain)

    return app
