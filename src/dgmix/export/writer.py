"""``dgmix export``: a detector as one ONNX graph, ``torch.onnx.export`` of the module that scores.

The graph is :class:`~dgmix.scoring.detector.Detector` itself, traced with torch's
TorchScript-based ONNX exporter (``dynamo=False``, opset 17; it needs nothing beyond torch): one
clip's log-mel frames ``(n_mels, T)`` (any ``T`` of at least one window) and its section index in,
the anomaly score out. The log-mel front end stays in Python (the same
:func:`~dgmix.features.clip_logmel` with the feature settings stored in the file), and so do the
section and threshold rules.

What the runtime needs besides the graph travels in the model's metadata (key ``dgmix``, JSON):
the detector's :class:`~dgmix.scoring.detector.DetectorInfo` (feature settings, sections, back end,
health), the thresholds and each section's calibration scores (the p-values' reference,
:mod:`dgmix.scoring.conformal`). Before the file is written, the graph is run on onnxruntime on random
frames of two lengths for every section and compared with the module it was traced from.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dgmix import __version__
from dgmix.errors import InputError
from dgmix.extras import require
from dgmix.scoring.detector import Detector

__all__ = ["FORMAT", "OPSET", "ExportInfo", "export_onnx"]

FORMAT = "dgmix-onnx-3"
OPSET = 17
#: Relative tolerance of the export-time comparison of onnxruntime with PyTorch on random frames: a
#: guard against a wrong graph (a mis-traced shape gives differences of order 1), looser than the
#: 1e-5 the tests hold real clips to, so that rounding on odd random inputs never blocks an export.
SELF_CHECK_RTOL = 1e-3


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_onnx` wrote."""

    path: Path
    method: str
    machine: str
    sections: list[str]
    size_bytes: int
    max_rel_diff: float


def example_frames(detector: Detector, n_frames: int, seed: int = 0) -> np.ndarray:
    """Random log-mel-like frames (dB values) ``(n_mels, n_frames)``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((detector.params.n_mels, n_frames)) * 10.0 - 40.0).astype(np.float32)


def metadata(detector: Detector) -> dict:
    """The ``dgmix`` metadata entry of the ONNX model (module docstring)."""
    return {"format": FORMAT, "dgmix_version": __version__, "info": detector.info.to_dict(),
            "thresholds": [float(t) if np.isfinite(t) else None for t in detector.thresholds.tolist()],
            "calibration": [c.tolist() for c in detector.calibration_scores()]}


def self_check(detector: Detector, model_bytes: bytes) -> float:
    """Largest relative difference between onnxruntime and ``detector`` on random frames (two
    lengths, every section). Raises InputError above :data:`SELF_CHECK_RTOL`."""
    ort = require("onnxruntime", "export", "dgmix export")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    p = detector.params
    for n_frames, seed in ((p.frames, 1), (p.frames + 5 * p.window_hop + 3, 2)):
        frames = example_frames(detector, n_frames, seed)
        for i in range(len(detector.section_names)):
            idx = np.array(i, dtype=np.int64)
            got = float(session.run(None, {"frames": frames, "section": idx})[0])
            with torch.inference_mode():
                ref = float(detector(torch.from_numpy(frames), torch.from_numpy(idx)))
            worst = max(worst, abs(got - ref) / max(abs(ref), 1e-12))
    if not worst <= SELF_CHECK_RTOL:
        raise InputError("onnx export", f"onnxruntime and PyTorch differ by {worst:.2e} (relative) on test "
                                        "inputs; nothing written")
    return worst


def export_onnx(detector: Detector, out: Path, source: str | Path = "detector") -> ExportInfo:
    """Write ``detector`` as an ONNX file at ``out`` (atomically); see the module docstring."""
    onnx = require("onnx", "export", "dgmix export")
    out = Path(out)
    if out.is_dir():
        raise InputError(out, "is a folder; give the file to write, e.g. detector.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    detector = detector.eval()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        traced = Path(tmp) / "graph.onnx"
        example = torch.from_numpy(example_frames(detector, detector.params.frames + 2 * detector.params.window_hop))
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
                torch.onnx.export(detector, (example, torch.tensor(0, dtype=torch.int64)), str(traced),
                                  dynamo=False, input_names=["frames", "section"], output_names=["score"],
                                  dynamic_axes={"frames": {1: "n_frames"}}, opset_version=OPSET,
                                  do_constant_folding=True)
        except (RuntimeError, ValueError) as exc:  # e.g. a bank over protobuf's 2 GB limit
            first = " ".join(str(exc).split())[:300]
            raise InputError(source, f"ONNX export failed: {first}") from None
        model = onnx.load(str(traced))
        onnx.helper.set_model_props(model, {"dgmix": json.dumps(metadata(detector))})
        model.doc_string = (f"dgmix {detector.method} detector for {detector.machine}: "
                            "(log-mel frames, section index) -> anomaly score")
        onnx.checker.check_model(model)
        data = model.SerializeToString()
        worst = self_check(detector, data)
        part = Path(tmp) / "out.onnx"
        part.write_bytes(data)
        os.replace(part, out)
    return ExportInfo(out, detector.method, detector.machine, list(detector.section_names), out.stat().st_size, worst)
