"""What the HTTP server does with a request, without the web framework: :class:`ScoringService`.

One service holds one loaded detector. :meth:`ScoringService.score_bytes` takes the bytes of an
uploaded WAV, its file name (for the section and the messages) and an optional section, and scores
it through :func:`dgmix.scoring.clips.score_clip`, the function ``dgmix score`` calls, so the server
and ``dgmix score`` give the same score for the same clip. The bytes go to a temporary file first
because the loader (:func:`dgmix.data.load_audio`) reads files; the file is deleted afterwards.

Scoring runs under a lock: one clip at a time per process. The torch and onnxruntime kernels already
use every core for one clip, and the detector's lazily built log-mel module is
then never built twice at once.

Status codes (:class:`ServeError`): 413 body over the size limit (raised by the app, which reads
the body), 415 not a WAV or FLAC file (libsndfile cannot read the header, or it is another format), 422 a
WAV the detector cannot score (corrupt data, empty, NaN/Inf, silent, shorter than one window,
unknown section).
"""

from __future__ import annotations

import math
import tempfile
import threading
from pathlib import Path
from typing import Any

import soundfile as sf

from dgmix.data import audio_problem, min_samples_for
from dgmix.errors import InputError
from dgmix.scoring.clips import clip_section, score_clip
from dgmix.scoring.detector import Detector

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: libsndfile container formats accepted (WAV and FLAC, as every other verb).
WAV_FORMATS = ("WAV", "WAVEX", "RF64", "FLAC")


class ServeError(Exception):
    """An error answered with ``status`` and ``{"error": message}``; ``str(e)`` is ``"<status>: <message>"``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class ScoringService:
    """Score uploaded clips with one detector (module docstring)."""

    def __init__(self, detector: Any, source: str | Path = "", max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.detector, self.source, self.max_bytes = detector, str(source), int(max_bytes)
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """``GET /info``: method, machine, feature parameters, sections, thresholds, scoring settings."""
        d = self.detector
        info, params = d.info, d.params
        min_samples = min_samples_for(params.frames, params.n_fft, params.hop_length, center=True)
        return {
            "method": d.method, "machine": d.machine, "kind": info.kind, "detector": Path(self.source).name,
            "features": params.to_dict(), "sections": list(d.section_names),
            "thresholds": {s: t if math.isfinite(t) else None
                           for s, t in zip(d.section_names, map(float, d.thresholds))},
            "scoring": None if info.kind == "classifier" else
            {"pooling": info.pooling, "gwrp_r": info.gwrp_r, "backend": info.backend, "per_domain": info.per_domain},
            "selection": None if info.selection is None else info.selection["chosen"],
            "health": info.health,
            "min_clip_seconds": min_samples / params.sample_rate, "max_upload_bytes": self.max_bytes,
        }

    def score_bytes(self, data: bytes, filename: str | None = None, section: str | None = None,
                    pad: bool | None = None, explain: bool = False) -> dict[str, Any]:
        """``POST /score``: ``{score, decision, threshold, p_value, section, method}`` or a :class:`ServeError`.

        ``pad`` zero-pads a clip shorter than one window (default: the detector's own setting);
        ``explain`` adds ``explanation``: the strongest bands (Hz) and times (s) behind the score
        (:meth:`dgmix.scoring.explain.Explanation.summary`; a detector.pt only, else 400)."""
        name = Path(filename).name if filename else "upload.wav"
        if explain and not isinstance(self.detector, Detector):
            raise ServeError(400, "explain=1 needs a server started with a detector.pt (an ONNX graph gives the "
                                  "score only)")
        if len(data) > self.max_bytes:
            raise ServeError(413, f"{name}: upload is {len(data)} bytes, over the limit of {self.max_bytes}")
        if not data:
            raise ServeError(422, f"{name}: empty upload (no bytes)")
        with tempfile.TemporaryDirectory(prefix="dgmix-serve-") as tmp:
            path = Path(tmp) / "clip.wav"
            path.write_bytes(data)
            problem = audio_problem(path)
            if problem is not None:
                rest = problem.removeprefix("not a readable audio file")
                status, text = (415, f"not a WAV or FLAC file{rest}") if rest != problem else (422, problem)
                raise ServeError(status, f"{name}: {text}")
            if (fmt := sf.info(str(path)).format) not in WAV_FORMATS:
                raise ServeError(415, f"{name}: a {fmt} file, not a WAV or FLAC")
            try:
                # cheap; fail before waiting for the lock
                clip_section(self.detector, path, section or None, name, "the section parameter")
                with self._lock:
                    res = score_clip(self.detector, path, section or None, pad=pad, name=name,
                                     option="the section parameter", explain=explain)
            except InputError as exc:
                # the loader's and the section rule's hints name CLI options; say the request's parameters
                hint = (exc.problem.replace("pass --section", "pass section=NN").replace("pass --pad", "pass pad=true")
                        .replace("pass --allow-silence (features.allow_silence) to accept it",
                                 "this detector refuses silent clips (one made by dgmix run --allow-silence "
                                 "accepts them)"))
                raise ServeError(422, f"{name}: {hint}") from None
            except ValueError as exc:  # e.g. a section whose bank is empty
                raise ServeError(422, f"{name}: {' '.join(str(exc).split())}") from None
        out = {"score": res.score, "decision": res.decision, "threshold": res.threshold, "p_value": res.p_value,
               "section": res.section, "method": self.detector.method}
        if res.explanation is not None:
            out["explanation"] = res.explanation.summary()
        return out
