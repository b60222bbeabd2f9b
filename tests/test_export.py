"""``dgmix export --format onnx`` and ``dgmix score --onnx``: onnxruntime scores equal the PyTorch
bundle's scores within 1e-4 (relative) on 20 clips, for every scoring option a bundle can hold
(k-NN options, standardised k-NN and the GMM back end of issue 14 included), and options the graph
cannot compute are refused with a one-line error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgmix.cli import app as cli_app
from dgmix.config import load_config
from dgmix.errors import InputError
from dgmix.methods.detector import section_thresholds
from dgmix.pipeline import run_pipeline
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.gmm import GMMScorer
from dgmix.scoring.knn import KNNScorer

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dgmix.export.runtime import OnnxDetector  # noqa: E402
from dgmix.export.writer import export_onnx  # noqa: E402

RTOL = 1e-4


@pytest.fixture(scope="module")
def clip_set(tiny_synth, tmp_path_factory):
    """20 clips none of which is in a bank: the 16 test clips (3 s, 4 windows) and 4 of another
    synthetic set (4.5 s, 8 windows: another input length than the bank's); the training clips."""
    from dgmix.synth import SynthConfig, generate

    other = tmp_path_factory.mktemp("synth45")
    generate(other, SynthConfig(machines=("fan",), sections=("00", "01"), train_source=1, train_target=1,
                                test_per_group=1, duration=4.5, seed=11), workers=1, progress=False)
    test = sorted((tiny_synth / "fan" / "test").glob("*.wav"))
    clips = test + sorted((other / "dev_data" / "fan" / "test").glob("*.wav"))[::2]
    assert len(clips) == 20
    return clips, sorted((tiny_synth / "fan" / "train").glob("*.wav"))


@pytest.fixture(scope="module")
def features(tiny_detectors, clip_set):
    """Log-mel of every clip and training clip, computed once (both bundles have the same settings)."""
    clips, train = clip_set
    bundle = DetectorBundle.load(tiny_detectors / "logmel" / "fan" / "detector.pt")
    assert DetectorBundle.load(tiny_detectors / "random" / "fan" / "detector.pt").params == bundle.params
    return {p: bundle.features_of(p) for p in clips + train}


def _sections(paths):
    return [p.name[8:10] for p in paths]


def _assert_equal_scores(bundle: DetectorBundle, onnx_path: Path, clips: list[Path], features: dict) -> np.ndarray:
    det = OnnxDetector.load(onnx_path)
    feats = [features[c] for c in clips]
    ref = bundle.score_features(feats, _sections(clips))
    got = det.score_features(feats, _sections(clips))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)
    # the scores differ between clips far more than the tolerance, so a wrong graph cannot pass
    assert np.ptp(ref) > 100 * RTOL * np.abs(ref).max()
    return ref


@pytest.mark.parametrize("method", ["random", "logmel"])
def test_onnx_equals_pytorch_on_20_clips(tiny_detectors, clip_set, tmp_path, method):
    clips, _ = clip_set
    bundle = DetectorBundle.load(tiny_detectors / method / "fan" / "detector.pt")
    info = export_onnx(bundle, tmp_path / f"{method}.onnx")
    assert info.max_rel_diff <= RTOL and info.path.stat().st_size == info.size_bytes
    det = OnnxDetector.load(info.path)
    # the ONNX detector's own loading path: the bundle's features, bit for bit
    np.testing.assert_array_equal(det.features_of(clips[-1]), bundle.features_of(clips[-1]))
    feats = {c: det.features_of(c) for c in clips}
    _assert_equal_scores(bundle, info.path, clips, feats)
    assert det.section_names == bundle.section_names and det.params == bundle.params
    np.testing.assert_array_equal(det.thresholds, bundle.thresholds.numpy())


def _refit(bundle: DetectorBundle, train: list[Path], features: dict, **options) -> DetectorBundle:
    """``bundle``'s encoder (or log-mel frames) with a k-NN scorer fitted with ``options``
    (a GMM scorer with ``backend="gmm"``)."""
    gmm = options.pop("backend", "knn") == "gmm"
    scorer = GMMScorer(**options) if gmm else KNNScorer(**options)
    emb = bundle.embed([features[p] for p in train])
    secs = bundle.section_index(_sections(train))
    doms = ["target" if "_target_" in p.name else "source" for p in train]
    scorer.fit(emb, secs, doms)
    loo = (scorer.loo_scores(emb, secs, doms) if gmm else scorer.loo_scores(emb, secs)).double().numpy()
    return DetectorBundle(bundle.kind, bundle.machine, bundle.method, bundle.params, bundle.section_names,
                          scorer=scorer, encoder=bundle.encoder, model_config=bundle.model_config,
                          thresholds=section_thresholds(loo, secs, len(bundle.section_names), 0.9)).eval()


OPTIONS = [
    {"pooling": "max"}, {"pooling": "gwrp", "gwrp_r": 0.7}, {"pooling": "gwrp", "gwrp_r": 0.0},
    {"pooling": "mean+max"}, {"pooling": "mean+std"}, {"k": 3},
    {"domain_aware": True}, {"domain_aware": True, "k": 3, "pooling": "mean+std"},
    {"bank_reduce": "coreset", "bank_size": 3, "projection_dim": 16}, {"bank_reduce": "random", "bank_size": 2},
    {"window_level": True, "aggregation": "mean"}, {"window_level": True, "aggregation": "max", "k": 2},
    {"window_level": True, "aggregation": "topk-mean", "topk_k": 5},
    {"window_level": True, "aggregation": "topk-mean", "topk_k": 500, "domain_aware": True},
    {"standardize": True}, {"standardize": True, "pooling": "mean+std", "k": 2},
    {"standardize": True, "window_level": True, "aggregation": "topk-mean", "topk_k": 5, "domain_aware": True},
    {"standardize": True, "bank_reduce": "coreset", "bank_size": 3, "projection_dim": 16},
    {"backend": "gmm", "pooling": "mean"}, {"backend": "gmm", "pooling": "gwrp", "gwrp_r": 0.7},
    {"backend": "gmm", "pooling": "mean+std", "covariance": "full", "domain": "tied"},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_scoring_option_logmel(tiny_detectors, clip_set, features, tmp_path, options):
    clips, train = clip_set
    bundle = _refit(DetectorBundle.load(tiny_detectors / "logmel" / "fan" / "detector.pt"), train, features,
                    **options)
    _assert_equal_scores(bundle, export_onnx(bundle, tmp_path / "d.onnx").path, clips, features)


def test_encoder_with_window_level_domain_aware_banks(tiny_detectors, clip_set, features, tmp_path):
    clips, train = clip_set
    bundle = _refit(DetectorBundle.load(tiny_detectors / "random" / "fan" / "detector.pt"), train, features,
                    window_level=True, domain_aware=True, aggregation="topk-mean", topk_k=3, k=2)
    _assert_equal_scores(bundle, export_onnx(bundle, tmp_path / "d.onnx").path, clips, features)


@pytest.mark.parametrize("options", [{"backend": "gmm", "pooling": "mean", "domain": "tied"},
                                     {"standardize": True, "k": 3, "domain_aware": True}], ids=["gmm", "std-knn"])
def test_encoder_with_issue14_back_ends(tiny_detectors, clip_set, features, tmp_path, options):
    clips, train = clip_set
    bundle = _refit(DetectorBundle.load(tiny_detectors / "random" / "fan" / "detector.pt"), train, features,
                    **options)
    assert bundle.kind == "knn"
    _assert_equal_scores(bundle, export_onnx(bundle, tmp_path / "d.onnx").path, clips, features)


#: The issue-14 back ends as ``dgmix run`` fits them (scoring.per_method.logmel, as tests/test_gmm.py).
PIPELINE_SCORING = [
    {"backend": "knn", "k": 1, "standardize": True, "domain_aware": True},
    {"backend": "knn", "k": 3, "standardize": True, "domain_aware": True},
    {"backend": "gmm", "gmm_covariance": "diag"},
    {"backend": "gmm", "gmm_covariance": "full"},
    {"backend": "gmm", "gmm_domain": "tied", "pooling": "gwrp", "gwrp_r": 0.5},
]


@pytest.mark.parametrize("scoring", PIPELINE_SCORING, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_issue14_back_ends_of_dgmix_run(scoring, tiny_synth, feature_cache, tiny_detectors, clip_set, features,
                                        tmp_path):
    clips, _ = clip_set
    cfg = load_config("tiny", overrides={"scoring": {"per_method": {"logmel": scoring}}})
    run_pipeline(tiny_synth, tmp_path, cfg, methods=["logmel"], cache_dir=feature_cache, progress=False,
                 echo=lambda s: None)
    path = tmp_path / "logmel" / "fan" / "detector.pt"
    bundle = DetectorBundle.load(path)
    # the same feature settings as the bundle the ``features`` fixture computed the log-mel with
    assert bundle.params == DetectorBundle.load(tiny_detectors / "logmel" / "fan" / "detector.pt").params
    assert bundle.section_names == ["00", "01"]
    gmm = scoring["backend"] == "gmm"
    scorer = bundle.scorer
    assert type(scorer) is (GMMScorer if gmm else KNNScorer)
    if gmm:
        assert scorer.covariance == scoring.get("gmm_covariance", "diag")
        assert scorer.domain == scoring.get("gmm_domain", "none")
    else:
        assert scorer.standardize and scorer.domain_aware and scorer.k == scoring["k"]
    onnx_file = tmp_path / "d.onnx"
    res = CliRunner().invoke(cli_app, ["export", str(path), "--format", "onnx", "--out", str(onnx_file)])
    assert res.exit_code == 0, res.output
    held = f"{scorer.means.shape[0]} mixture components" if gmm else f"{scorer.bank.shape[0]} bank rows"
    assert res.output.splitlines()[0].endswith(f"sections 00, 01, {held}"), res.output
    ref = _assert_equal_scores(bundle, onnx_file, clips, features)
    det = OnnxDetector.load(onnx_file)
    assert det.scorer_kind == ("gmm" if gmm else "knn") and det.scorer_config == scorer.config()
    assert det.bank_sections == ["00", "01"]
    np.testing.assert_array_equal(det.thresholds, bundle.thresholds.numpy())
    if gmm:  # the likelihood is float64 in the graph, as in torch
        assert det.session.get_outputs()[0].type == "tensor(double)"
        assert np.all(np.isfinite(ref))


def _cluster_clips(rng, n, centre, dim=6, windows=5):
    """``n`` clips of ``windows`` windows whose mean lies around ``centre`` (one cluster of clips)."""
    spread = 1.0 + np.arange(dim) / dim
    return [torch.from_numpy(rng.normal(size=dim) * spread + centre + rng.normal(size=(windows, dim)) * 0.1)
            .float() for _ in range(n)]


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_gmm_graph_pads_sections_with_fewer_components(cov, tmp_path):
    """Section 0 has two components, section 1 one, section 2 none: the graph pads sections 1 and 2
    with log-weight -BIG components, and scores as the scorer does on onnxruntime too."""
    import onnxruntime as ort

    from dgmix.export.graph import BIG, GmmGraph
    from dgmix.export.writer import _trace

    rng = np.random.default_rng(5)
    clips = _cluster_clips(rng, 40, 0.0) + _cluster_clips(rng, 40, 8.0) + _cluster_clips(rng, 30, 3.0)
    sections = [0] * 80 + [1] * 30
    scorer = GMMScorer(pooling="mean", covariance=cov, max_components=3).fit(clips, sections)
    assert [int((scorer.comp_sections == s).sum()) for s in (0, 1)] == [2, 1]
    graph = GmmGraph(None, scorer, 3).eval()
    assert graph.log_weights.shape == (3, 2) and graph.log_weights[1, 1] == -BIG
    assert bool((graph.log_weights[2] == -BIG).all())
    queries = _cluster_clips(rng, 6, 4.0, windows=7) + _cluster_clips(rng, 2, 0.0, windows=3)
    _trace(graph, queries[0].numpy(), tmp_path / "g.onnx")
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    for s in (0, 1):
        ref = scorer.score(queries, [s] * len(queries)).numpy()
        with torch.no_grad():
            mine = np.array([float(graph(q, torch.tensor(s))[0]) for q in queries])
        got = np.array([session.run(None, {"windows": q.numpy(), "section": np.array(s, dtype=np.int64)})[0][0]
                        for q in queries])
        np.testing.assert_allclose(mine, ref, rtol=1e-12)
        # onnxruntime's float32 mean over the windows may round differently from torch's (1e-8 here)
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_classifier_bundle(tiny_detectors, clip_set, features, tmp_path):
    from dgmix.models import build_classifier

    clips, _ = clip_set
    knn = DetectorBundle.load(tiny_detectors / "random" / "fan" / "detector.pt")
    torch.manual_seed(0)
    classifier = build_classifier(knn.model_config, 2)
    with torch.no_grad():
        for p in classifier.parameters():
            p.mul_(5.0)  # spread the softmax so that the scores differ between clips
    bundle = DetectorBundle("classifier", "fan", "baseline", knn.params, knn.section_names, encoder=knn.encoder,
                            classifier=classifier, model_config=knn.model_config, thresholds=[0.0, 0.0]).eval()
    _assert_equal_scores(bundle, export_onnx(bundle, tmp_path / "c.onnx").path, clips, features)


def test_cli_export_then_score_onnx(tiny_detectors, clip_set, tmp_path):
    clips, _ = clip_set
    detector = tiny_detectors / "logmel" / "fan" / "detector.pt"
    onnx_file = tmp_path / "out" / "logmel.onnx"
    runner = CliRunner()
    res = runner.invoke(cli_app, ["export", str(detector), "--format", "onnx", "--out", str(onnx_file)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"wrote {onnx_file}") and "sections 00, 01" in res.output

    def scores(*args):
        out = tmp_path / "s.csv"
        r = runner.invoke(cli_app, ["score", *args, *map(str, clips[:6]), "--csv", str(out)])
        assert r.exit_code == 0, r.output
        with open(out, newline="") as fh:
            return [(row[0], float(row[1]), row[2]) for row in csv.reader(fh)]

    ref, got = scores(str(detector)), scores("--onnx", str(onnx_file))
    assert [r[0] for r in ref] == [g[0] for g in got]
    np.testing.assert_allclose([g[1] for g in got], [r[1] for r in ref], rtol=RTOL, atol=0)
    thresholds = DetectorBundle.load(detector).thresholds.numpy()
    for (name, s, d), (_, _, dg) in zip(ref, got):
        if abs(s - thresholds[int(Path(name).name[8:10])]) > 1e-3:
            assert d == dg


def _one_line_error(args: list[str], expected: str) -> None:
    res = CliRunner().invoke(cli_app, args)
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], res.output


def test_refusals_name_the_option(tiny_detectors, tmp_path):
    src = tiny_detectors / "logmel" / "fan" / "detector.pt"
    bundle = DetectorBundle.load(src)
    scorer = bundle.scorer
    scorer._CONFIG = (*KNNScorer._CONFIG, "backend")  # a scoring option the export does not know
    scorer.backend = "gmm"
    with pytest.raises(InputError, match=r"d.pt: scoring option backend='gmm' is not supported by the ONNX export"):
        export_onnx(bundle, tmp_path / "x.onnx", source="d.pt")

    class OtherScorer(KNNScorer):
        pass

    other = DetectorBundle.load(src)
    other.scorer.__class__ = OtherScorer
    with pytest.raises(InputError, match="scoring back end OtherScorer is not supported"):
        export_onnx(other, tmp_path / "x.onnx")
    gmm = DetectorBundle.load(src)
    gmm.kind = "gmm"
    with pytest.raises(InputError, match="detector kind 'gmm' is not supported by the ONNX export"):
        export_onnx(gmm, tmp_path / "x.onnx")
    unfitted = DetectorBundle.load(src)
    unfitted.scorer = GMMScorer()
    with pytest.raises(InputError, match="d.pt: the detector's Gaussian mixture is empty"):
        export_onnx(unfitted, tmp_path / "x.onnx", source="d.pt")
    assert not (tmp_path / "x.onnx").exists()
    gmm.save(tmp_path / "gmm.pt")
    # a bundle file of a kind dgmix does not know is refused when it is loaded (issue 13)
    _one_line_error(["export", str(tmp_path / "gmm.pt"), "--out", str(tmp_path / "x.onnx")],
                    "gmm.pt: detector bundle has an unknown kind 'gmm'")
    _one_line_error(["export", str(src), "--format", "tflite", "--out", str(tmp_path / "x")],
                    "--format 'tflite' is not supported (supported: onnx)")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's notice about its TorchScript exporter
def test_score_onnx_rejects_other_files(tiny_synth, tmp_path, monkeypatch):
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(3, 1), (torch.zeros(1, 3),), str(plain), dynamo=False)
    clip = next((tiny_synth / "fan" / "test").glob("*.wav"))
    _one_line_error(["score", "--onnx", str(plain), str(clip)], "not a dgmix ONNX detector")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    _one_line_error(["score", "--onnx", str(tmp_path / "junk.onnx"), str(clip)], "not a readable ONNX model")
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    _one_line_error(["score", "--onnx", str(plain), str(clip)],
                    "dgmix score --onnx needs the 'onnxruntime' package, which is not installed; "
                    "run: pip install -e '.[export]' in the dgmix source folder")


def test_self_check_refuses_a_graph_that_traced_wrong(tiny_detectors, tmp_path, monkeypatch):
    import dgmix.export.writer as writer

    class ShapeFrozen(torch.nn.Module):
        """Python control flow on the window count: tracing keeps only the branch of the example input."""

        def forward(self, windows, section):
            scale = 1.0 if windows.shape[0] <= 3 else 2.0
            return (windows.double().mean() * scale + section.double()).reshape(1)

    monkeypatch.setattr(writer, "build_graph", lambda bundle: ShapeFrozen())
    bundle = DetectorBundle.load(tiny_detectors / "logmel" / "fan" / "detector.pt")
    with pytest.raises(InputError, match="onnxruntime and PyTorch differ by .* nothing written"):
        export_onnx(bundle, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
