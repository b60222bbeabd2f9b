"""``dgmix export`` (``torch.onnx.export`` of the :class:`~dgmix.scoring.detector.Detector` module) and
``dgmix score --onnx``: on the real onnxruntime, the exported graph scores every test clip of the tiny
set as the torch module does (1e-5 relative) for every back end, pooling, the random encoder and
the baseline's classifier; the CLI round trip gives the same scores and decisions as ``dgmix score``;
one graph serves every clip length; files that are not detectors are refused with one line."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dgmix.cli import app as cli_app
from dgmix.config import ScoringConfig, load_config
from dgmix.errors import InputError
from dgmix.scoring.clips import load_detector, score_clip
from dgmix.scoring.detector import Detector

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from dgmix.export.runtime import OnnxDetector  # noqa: E402
from dgmix.export.writer import export_onnx  # noqa: E402

RTOL = 1e-5
#: The classifier's score is a difference of two logits of the float32 encoder's embedding: it
#: carries the encoder's own float32 rounding (~2e-5 relative on these random-weight clips: PyTorch
#: float32 against PyTorch float64 differs as much as onnxruntime does), so it is held to 1e-4,
#: and onnxruntime is shown to be as close to the float64 evaluation as PyTorch's float32 is.
RTOL_CLASSIFIER = 1e-4

#: Logmel detectors refitted with each back end; every pooling at least once, per_domain twice.
LOGMEL_SCORING = {
    "1nn-max": {"pooling": "max", "backend": "1nn"},
    "3nn-std-domain-gwrp": {"pooling": "gwrp", "gwrp_r": 0.7, "backend": "3nn-std", "per_domain": True},
    "gmm-diag-mean": {"pooling": "mean", "backend": "gmm-diag"},
    "gmm-diag-domain-max": {"pooling": "max", "backend": "gmm-diag", "per_domain": True},
    "gauss-lw-gwrp": {"pooling": "gwrp", "gwrp_r": 0.5, "backend": "gauss-lw"},
}


def _limit_blas_threads():
    """One BLAS thread while fitting (the Ledoit-Wolf fits spin on a loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


@pytest.fixture(scope="module")
def test_clips(tiny_synth) -> list[Path]:
    clips = sorted((tiny_synth / "fan" / "test").glob("*.wav"))
    assert len(clips) == 16  # 2 sections x 2 domains x (2 normal + 2 anomalous)
    return clips


@pytest.fixture(scope="module")
def random_detector(tiny_detectors) -> Detector:
    return Detector.load(tiny_detectors / "random" / "fan" / "detector.pt")


@pytest.fixture(scope="module")
def clip_features(random_detector, test_clips) -> list[np.ndarray]:
    """Log-mel of every test clip (all detectors here have the tiny preset's feature settings)."""
    return [random_detector.features_of(c) for c in test_clips]


@pytest.fixture(scope="module")
def detectors(tiny_synth, feature_cache, tiny_detectors, random_detector) -> dict[str, Detector]:
    """Detectors of every kind, fitted on the tiny set's training clips with fixed seeds."""
    from dgmix.data import scan
    from dgmix.methods.detector import fit_detector
    from dgmix.methods.machine import load_machine
    from dgmix.models import build_classifier

    cfg = load_config("tiny")
    assert cfg.features == random_detector.params
    md = load_machine(scan(tiny_synth), "fan", cfg.features, feature_cache, progress=False)
    out: dict[str, Detector] = {"random": random_detector}
    with _limit_blas_threads():
        for name, scoring in LOGMEL_SCORING.items():
            out[name] = fit_detector("logmel", md, cfg, ScoringConfig(**scoring))
        torch.manual_seed(0)
        classifier = build_classifier(cfg.model, len(md.section_names))
        out["classifier"] = fit_detector("baseline", md, cfg, ScoringConfig(), encoder=random_detector.encoder,
                                         classifier=classifier)
    for name, scoring in LOGMEL_SCORING.items():
        info = out[name].info
        assert (info.kind, info.backend, info.pooling, info.per_domain) == (
            "logmel", scoring["backend"], scoring["pooling"], scoring.get("per_domain", False))
    assert out["random"].info.kind == "encoder" and out["classifier"].info.kind == "classifier"
    return out


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def _sections(paths: list[Path]) -> list[str]:
    return [p.name[8:10] for p in paths]


@pytest.mark.parametrize("name", [*LOGMEL_SCORING, "random", "classifier"])
def test_onnxruntime_equals_torch_on_every_test_clip(name, detectors, test_clips, clip_features, onnx_dir):
    det = detectors[name]
    info = export_onnx(det, onnx_dir / f"{name}.onnx")
    assert info.path.stat().st_size == info.size_bytes and info.sections == ["00", "01"]
    loaded = OnnxDetector.load(info.path)
    assert loaded.info == det.info  # kind, back end, pooling, feature settings, health: all travel
    np.testing.assert_array_equal(loaded.thresholds, det.thresholds.numpy())
    assert np.all(np.isfinite(loaded.thresholds))
    # the ONNX detector's own loading path gives the module's features, bit for bit
    np.testing.assert_array_equal(loaded.features_of(test_clips[-1]), clip_features[-1])
    sections = _sections(test_clips)
    ref = det.score_features(clip_features, sections)
    got = loaded.score_features(clip_features, sections)
    assert np.all(np.isfinite(ref))
    rtol = RTOL_CLASSIFIER if det.info.kind == "classifier" else RTOL
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0)
    # the scores differ between clips far more than the tolerance, so a wrong graph cannot pass
    assert np.ptp(ref) > 1000 * rtol * np.abs(ref).max()
    if det.info.kind == "classifier":
        # what is left is float32 rounding: onnxruntime is as close to float64 as PyTorch float32 is
        d64 = copy.deepcopy(det).double()
        with torch.inference_mode():
            exact = np.array([float(d64(torch.from_numpy(f).double(), torch.tensor(int(s))))
                              for f, s in zip(clip_features, det.section_index(sections))])
        torch_err, ort_err = np.abs(ref - exact).max(), np.abs(got - exact).max()
        assert ort_err <= 5 * torch_err + 1e-9 * np.abs(exact).max(), (ort_err, torch_err)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    sf.write(str(path), samples, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("name", ["random", "1nn-max"])
def test_one_graph_scores_clips_of_two_lengths(name, detectors, test_clips, onnx_dir, tmp_path):
    """The frames axis is dynamic: a 2.2-s clip (one window for the encoder) and a 6-s clip (two test
    clips joined: 16 windows) through the same graph, both equal to the module's scores."""
    det = detectors[name]
    path = onnx_dir / f"{name}-lengths.onnx"
    export_onnx(det, path)
    session_input = onnx.load(str(path)).graph.input[0]
    assert session_input.name == "frames"
    assert session_input.type.tensor_type.shape.dim[1].dim_param  # a symbolic frames axis
    loaded = OnnxDetector.load(path)
    a, rate = sf.read(str(test_clips[0]), dtype="float32")
    b, _ = sf.read(str(test_clips[1]), dtype="float32")  # both section 00
    short = _write_wav(tmp_path / test_clips[0].name, a[: int(2.2 * rate)], rate)
    long = _write_wav(tmp_path / f"long_{test_clips[1].name}", np.concatenate([a, b]), rate)
    frames = [det.features_of(p).shape[1] for p in (short, long)]
    assert frames[0] < det.params.frames + det.params.window_hop and frames[1] > 2 * frames[0]
    for clip in (short, long):
        ref = score_clip(det, clip, "00")
        got = score_clip(loaded, clip, "00")
        assert got.section == ref.section == "00"
        np.testing.assert_allclose(got.score, ref.score, rtol=RTOL, atol=0)
        assert got.threshold == ref.threshold


def _cli(*args: str, ok: bool = True):
    res = CliRunner().invoke(cli_app, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output
    return res


def _csv_rows(path: Path) -> dict[str, tuple[float, str]]:
    with open(path, newline="") as fh:
        return {Path(r[0]).name: (float(r[1]), r[2]) for r in csv.reader(fh)}


@pytest.mark.parametrize("method", ["logmel", "random"])
def test_cli_export_then_score_onnx_equals_dgmix_score(method, tiny_detectors, tiny_synth, test_clips, tmp_path):
    detector = tiny_detectors / method / "fan" / "detector.pt"
    det = Detector.load(detector)
    onnx_file = tmp_path / "out" / f"{method}.onnx"
    res = _cli("export", detector, "--out", onnx_file)
    assert res.output.startswith(f"wrote {onnx_file}") and "sections 00, 01" in res.output
    assert onnx_file.is_file()
    folder = tiny_synth / "fan" / "test"
    _cli("score", detector, folder, "--csv", tmp_path / "pt.csv")
    _cli("score", "--onnx", onnx_file, folder, "--csv", tmp_path / "onnx.csv")
    ref, got = _csv_rows(tmp_path / "pt.csv"), _csv_rows(tmp_path / "onnx.csv")
    assert sorted(ref) == sorted(got) == sorted(c.name for c in test_clips)
    thresholds = dict(zip(det.section_names, det.thresholds.tolist()))
    compared = 0
    for name, (score, decision) in ref.items():
        np.testing.assert_allclose(got[name][0], score, rtol=RTOL, atol=0, err_msg=name)
        thr = thresholds[name[8:10]]
        assert decision in ("0", "1") and decision == str(int(score > thr))
        if abs(score - thr) > RTOL * abs(thr):  # never a decision at the threshold
            assert got[name][1] == decision, name
            compared += 1
    assert compared >= 12  # the thresholds are not crowded by the scores


def _one_line_error(args: list, expected: str) -> None:
    res = _cli(*args, ok=False)
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], res.output


def test_export_refuses_what_is_not_a_detector(tiny_detectors, tmp_path):
    src = tiny_detectors / "logmel" / "fan" / "detector.pt"
    out = tmp_path / "x.onnx"
    encoder_file = tiny_detectors / "random" / "fan" / "random" / "encoder.pt"  # a checkpoint, not a detector
    _one_line_error(["export", encoder_file, "--out", out], "not a dgmix detector (no detector metadata)")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _one_line_error(["export", tmp_path / "junk.pt", "--out", out], "not a torch file")
    folder = tmp_path / "folder"
    folder.mkdir()
    _one_line_error(["export", src, "--out", folder], "is a folder; give the file to write")
    _one_line_error(["export", folder, "--out", out], "is a folder")
    _one_line_error(["export", src, "--format", "tflite", "--out", out], "--format 'tflite' is not supported")
    assert not out.exists() and list(folder.iterdir()) == []
    _cli("export", src, "--out", out)
    _one_line_error(["export", out, "--out", tmp_path / "y.onnx"], "is already an ONNX file")
    assert not (tmp_path / "y.onnx").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's notice about its TorchScript exporter
def test_onnx_without_dgmix_metadata_is_refused(test_clips, tmp_path):
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(3, 1), (torch.zeros(1, 3),), str(plain), dynamo=False)
    with pytest.raises(InputError, match="not a dgmix ONNX detector"):
        OnnxDetector.load(plain)
    with pytest.raises(InputError, match="not a dgmix ONNX detector"):
        load_detector(plain)
    _one_line_error(["score", "--onnx", plain, test_clips[0]], "not a dgmix ONNX detector")
    # dgmix metadata of another format version: refused the same way
    model = onnx.load(str(plain))
    onnx.helper.set_model_props(model, {"dgmix": json.dumps({"format": "dgmix-onnx-1"})})
    other = tmp_path / "other.onnx"
    other.write_bytes(model.SerializeToString())
    _one_line_error(["score", "--onnx", other, test_clips[0]], "not a dgmix ONNX detector of this version")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    _one_line_error(["score", "--onnx", tmp_path / "junk.onnx", test_clips[0]], "not a readable ONNX model")
