"""``dgmix export``: write a detector bundle as one ONNX graph (windows + section in, score out).

The graph is :mod:`dgmix.export.graph` traced with torch's TorchScript-based ONNX exporter
(``torch.onnx.export(..., dynamo=False)``, opset 17). That exporter needs nothing beyond torch;
the newer ``dynamo=True`` one would add ``onnxscript`` to the ``[export]`` extra, and every torch
this package accepts (2.2-2.13) still has the TorchScript one. Its deprecation warnings are muted.

What the runtime needs besides the graph travels in the model's metadata (key ``dgmix``, JSON):
the feature parameters (log-mel front end and windowing, computed in Python by the same
:func:`~dgmix.features.clip_logmel` as the bundle), the section names, the sections that have a
bank (k-NN) or a mixture (GMM), the thresholds, the method, the machine type, the scoring back end
(``scorer_kind``: ``knn`` or ``gmm``) and the scorer settings.

Only what the graph computes exactly is exported; anything else is refused with a one-line
:class:`~dgmix.errors.InputError` that names the option (see :func:`check_exportable`), so an
exported graph never scores differently from its bundle without saying so. Before the file is
written, the graph is run on onnxruntime on random windows of two lengths and compared with the
PyTorch module it was traced from (:func:`self_check`).
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
from dgmix.export.graph import ClassifierGraph, GmmGraph, KnnGraph
from dgmix.extras import require
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.gmm import GMMScorer
from dgmix.scoring.knn import KNNScorer

__all__ = ["FORMAT", "OPSET", "ExportInfo", "build_graph", "check_exportable", "export_onnx", "self_check"]

FORMAT = "dgmix-onnx-1"
OPSET = 17
KINDS = ("knn", "logmel", "classifier")
POOLINGS = ("mean", "max", "gwrp", "mean+max", "mean+std")
AGGREGATIONS = ("mean", "max", "topk-mean")
#: KNNScorer settings the graph reproduces. bank_reduce / bank_size / projection_dim / seed only chose
#: which rows were kept when the bank was fitted (the graph holds the kept rows); scale_sample chose
#: the rows of the domain scales (the graph holds the scales); chunk is a memory block size;
#: standardize: the graph holds the per-section mean and std.
HANDLED_SCORER_SETTINGS = ("k", "domain_aware", "window_level", "aggregation", "topk_k", "pooling", "gwrp_r",
                           "bank_reduce", "bank_size", "projection_dim", "scale_sample", "seed", "chunk",
                           "standardize")
#: GMMScorer settings the graph reproduces. pooling / gwrp_r / covariance are computed; max_components,
#: reg_covar, domain, folds and seed only shaped the fitted mixture (the graph holds its components)
#: or the training scores behind the thresholds (which travel in the metadata).
HANDLED_GMM_SETTINGS = ("pooling", "gwrp_r", "covariance", "max_components", "reg_covar", "domain", "folds",
                        "seed")
SCORERS = {KNNScorer: ("knn", HANDLED_SCORER_SETTINGS), GMMScorer: ("gmm", HANDLED_GMM_SETTINGS)}
#: Relative tolerance of the export-time comparison of onnxruntime with PyTorch on random windows: a
#: guard against a wrong graph (a mis-traced shape gives differences of order 1), looser than the
#: 1e-4 the tests hold real clips to, so that float32 rounding on odd random inputs never blocks an export.
SELF_CHECK_RTOL = 1e-3


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_onnx` wrote."""

    path: Path
    kind: str
    method: str
    machine: str
    sections: list[str]
    bank_rows: int
    components: int
    size_bytes: int
    max_rel_diff: float


def check_exportable(bundle: DetectorBundle, source: str | Path) -> None:
    """Raise InputError(``source``, ...) naming the first thing of ``bundle`` the graph cannot compute."""
    if bundle.kind not in KINDS:
        raise InputError(source, f"detector kind {bundle.kind!r} is not supported by the ONNX export "
                                 f"(supported: {', '.join(KINDS)})")
    if bundle.kind == "classifier":
        return
    scorer = bundle.scorer
    if type(scorer) not in SCORERS:
        raise InputError(source, f"scoring back end {type(scorer).__name__} is not supported by the ONNX export "
                                 f"(supported: {', '.join(c.__name__ for c in SCORERS)})")
    handled = SCORERS[type(scorer)][1]
    for name, value in scorer.config().items():
        if name not in handled:
            raise InputError(source, f"scoring option {name}={value!r} is not supported by the ONNX export")
    if isinstance(scorer, GMMScorer):
        if not scorer.is_fitted:
            raise InputError(source, "the detector's Gaussian mixture is empty (not fitted)")
        if scorer.pooling not in POOLINGS:
            raise InputError(source, f"scoring option pooling={scorer.pooling!r} is not supported by the ONNX "
                                     f"export (supported: {', '.join(POOLINGS)})")
        return
    if not scorer.is_fitted:
        raise InputError(source, "the detector's k-NN bank is empty (not fitted)")
    if not scorer.window_level and scorer.pooling not in POOLINGS:
        raise InputError(source, f"scoring option pooling={scorer.pooling!r} is not supported by the ONNX "
                                 f"export (supported: {', '.join(POOLINGS)})")
    if scorer.window_level and scorer.aggregation not in AGGREGATIONS:
        raise InputError(source, f"scoring option aggregation={scorer.aggregation!r} is not supported by the "
                                 f"ONNX export (supported: {', '.join(AGGREGATIONS)})")


def build_graph(bundle: DetectorBundle) -> KnnGraph | GmmGraph | ClassifierGraph:
    """The scoring graph of ``bundle`` (call :func:`check_exportable` first)."""
    if bundle.kind == "classifier":
        return ClassifierGraph(bundle.inference_encoder(), bundle.classifier).eval()
    encoder = None if bundle.kind == "logmel" else bundle.inference_encoder()
    if isinstance(bundle.scorer, GMMScorer):
        return GmmGraph(encoder, bundle.scorer, len(bundle.section_names)).eval()
    return KnnGraph(encoder, bundle.scorer, len(bundle.section_names)).eval()


def example_windows(bundle: DetectorBundle, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random log-mel-like windows (dB values) in the graph's input layout."""
    rng = np.random.default_rng(seed)
    p = bundle.params
    shape = (n, p.n_mels) if bundle.kind == "logmel" else (n, 1, p.n_mels, p.frames)
    return (rng.standard_normal(shape) * 10.0 - 40.0).astype(np.float32)


def bank_sections(bundle: DetectorBundle) -> list[str]:
    """Sections the graph can score: all for the classifier, those with bank rows for k-NN, those
    with mixture components for a GMM."""
    if bundle.kind == "classifier":
        return list(bundle.section_names)
    scorer = bundle.scorer
    owners = scorer.comp_sections if isinstance(scorer, GMMScorer) else scorer.bank_sections
    present = set(torch.unique(owners).tolist())
    return [s for i, s in enumerate(bundle.section_names) if i in present]


def metadata(bundle: DetectorBundle) -> dict:
    """The ``dgmix`` metadata entry of the ONNX model (module docstring)."""
    return {
        "format": FORMAT, "dgmix_version": __version__, "kind": bundle.kind, "method": bundle.method,
        "machine": bundle.machine, "params": bundle.params.to_dict(), "section_names": list(bundle.section_names),
        "bank_sections": bank_sections(bundle),
        "thresholds": [float(t) if np.isfinite(t) else None for t in bundle.thresholds.tolist()],
        "scorer": bundle.scorer.config() if bundle.scorer is not None else None,
        "scorer_kind": None if bundle.scorer is None else SCORERS[type(bundle.scorer)][0],
        "input": "frames (T, n_mels)" if bundle.kind == "logmel" else "windows (W, 1, n_mels, frames)",
    }


def _trace(graph: torch.nn.Module, windows: np.ndarray, out: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            graph, (torch.from_numpy(windows), torch.tensor(0, dtype=torch.int64)), str(out),
            dynamo=False, input_names=["windows", "section"], output_names=["score"],
            dynamic_axes={"windows": {0: "n_windows"}}, opset_version=OPSET, do_constant_folding=True,
        )


def self_check(graph: torch.nn.Module, model_bytes: bytes, bundle: DetectorBundle) -> float:
    """Largest relative difference between onnxruntime and ``graph`` on random windows (two
    lengths, every section the graph can score). Raises InputError above :data:`SELF_CHECK_RTOL`."""
    ort = require("onnxruntime", "export", "dgmix export")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    sections = bank_sections(bundle)
    for n, seed in ((2, 1), (11, 2)):
        windows = example_windows(bundle, n, seed)
        for name in sections:
            idx = np.array(bundle.section_names.index(name), dtype=np.int64)
            got = float(session.run(None, {"windows": windows, "section": idx})[0][0])
            with torch.no_grad():
                ref = float(graph(torch.from_numpy(windows), torch.from_numpy(idx))[0])
            worst = max(worst, abs(got - ref) / max(abs(ref), 1e-12))
    if not worst <= SELF_CHECK_RTOL:
        raise InputError("onnx export", f"onnxruntime and PyTorch differ by {worst:.2e} (relative) on test "
                                        "inputs; nothing written")
    return worst


def export_onnx(bundle: DetectorBundle, out: Path, source: str | Path = "detector") -> ExportInfo:
    """Write ``bundle`` as an ONNX file at ``out`` (atomically); see the module docstring."""
    onnx = require("onnx", "export", "dgmix export")
    check_exportable(bundle, source)
    graph = build_graph(bundle)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        traced = Path(tmp) / "graph.onnx"
        try:
            _trace(graph, example_windows(bundle, 3), traced)
        except (RuntimeError, ValueError) as exc:  # e.g. a bank over protobuf's 2 GB limit
            first = " ".join(str(exc).split())[:300]
            raise InputError(source, f"ONNX export failed: {first}") from None
        model = onnx.load(str(traced))
        onnx.helper.set_model_props(model, {"dgmix": json.dumps(metadata(bundle))})
        model.doc_string = (f"dgmix {bundle.method} detector for {bundle.machine}: "
                            "(windows, section index) -> anomaly score")
        onnx.checker.check_model(model)
        data = model.SerializeToString()
        worst = self_check(graph, data, bundle)
        part = Path(tmp) / "out.onnx"
        part.write_bytes(data)
        os.replace(part, out)
    scorer = bundle.scorer
    rows = int(scorer.bank.shape[0]) if isinstance(scorer, KNNScorer) else 0
    components = int(scorer.means.shape[0]) if isinstance(scorer, GMMScorer) else 0
    return ExportInfo(out, bundle.kind, bundle.method, bundle.machine, list(bundle.section_names), rows,
                      components, out.stat().st_size, worst)

