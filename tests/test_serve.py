"""``dgmix serve``: the HTTP API through FastAPI's test client and through a real uvicorn on
loopback, the same scores as ``dgmix score`` (both call the one Detector module), ``/info`` with the
detector's scoring, selection and health, every error status with its JSON message, and the
warning ``dgmix score`` prints for a detector that failed its health check."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import dgmix
from dgmix.cli import app as cli_app
from dgmix.scoring.clips import load_detector
from dgmix.scoring.detector import Detector

fastapi_testclient = pytest.importorskip("fastapi.testclient")
httpx = pytest.importorskip("httpx")

from dgmix.serve.app import MULTIPART_OVERHEAD, create_app  # noqa: E402
from dgmix.serve.service import DEFAULT_MAX_BYTES, ScoringService  # noqa: E402


def _client(detector: Path, max_bytes: int = DEFAULT_MAX_BYTES):
    service = ScoringService(load_detector(detector), detector, max_bytes)
    return fastapi_testclient.TestClient(create_app(service))


def _wav(samples: np.ndarray, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _cli_scores(detector: Path, clips: list[Path], tmp_path: Path, *extra: str) -> dict[str, tuple[float, str, str]]:
    out = tmp_path / "cli.csv"
    res = CliRunner().invoke(cli_app, ["score", *extra, *(str(a) for a in ([detector] if detector else [])),
                                       *map(str, clips), "--csv", str(out)])
    assert res.exit_code == 0, res.output
    with open(out, newline="") as fh:
        return {Path(r[0]).name: (float(r[1]), r[2], r[3]) for r in csv.reader(fh)}


@pytest.fixture(scope="module")
def clips(tiny_synth) -> list[Path]:
    test = sorted((tiny_synth / "fan" / "test").glob("*.wav"))
    return [test[0], test[5], test[-1]]


@pytest.mark.parametrize("method", ["random", "logmel"])
def test_scores_equal_dgmix_score(tiny_detectors, clips, tmp_path, method):
    detector = tiny_detectors / method / "fan" / "detector.pt"
    expected = _cli_scores(detector, clips, tmp_path)
    client = _client(detector)
    for clip in clips:
        multipart = client.post("/score", files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
        raw = client.post("/score", params={"filename": clip.name}, content=clip.read_bytes(),
                          headers={"content-type": "audio/wav"})
        for r in (multipart, raw):
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"score", "decision", "threshold", "p_value", "section", "method"}
            assert body["score"] == expected[clip.name][0]  # the same code path: bit-identical
            assert str(body["decision"]) == expected[clip.name][1]
            assert f"{body['p_value']:.4g}" == expected[clip.name][2] and 0 < body["p_value"] <= 1
            assert body["section"] == clip.name[8:10] and body["method"] == method
            assert body["decision"] == int(body["score"] > body["threshold"])


def test_section_from_parameter_and_health_info(tiny_detectors, clips):
    detector = tiny_detectors / "random" / "fan" / "detector.pt"
    det = Detector.load(detector)
    client = _client(detector)
    assert client.get("/health").json() == {"status": "ok", "method": "random", "machine": "fan"}
    info = client.get("/info").json()
    assert info["method"] == "random" and info["machine"] == "fan" and info["sections"] == ["00", "01"]
    assert info["kind"] == "encoder" and info["detector"] == "detector.pt"
    assert info["features"] == det.params.to_dict()
    assert info["thresholds"] == {s: float(t) for s, t in zip(det.section_names, det.thresholds.tolist())}
    assert info["scoring"] == {"pooling": "mean", "gwrp_r": det.info.gwrp_r, "backend": "1nn", "per_domain": False}
    assert info["selection"] is None  # the random control has no label-free choice
    assert info["health"] == det.info.health and info["health"]["ok"] is True
    assert info["max_upload_bytes"] == 10 * 1024 * 1024
    assert info["min_clip_seconds"] == pytest.approx((det.params.frames - 1) * det.params.hop_length
                                                     / det.params.sample_rate, rel=0.05)
    data = clips[0].read_bytes()  # a section 00 clip
    by_name = client.post("/score", files={"file": (clips[0].name, data, "audio/wav")}).json()
    as_01 = client.post("/score", params={"section": "01"}, content=data).json()
    form_01 = client.post("/score", files={"file": (clips[0].name, data, "audio/wav")}, data={"section": "01"})
    assert by_name["section"] == "00" and as_01["section"] == "01"
    # a section parameter against the name's section is refused (it is for names that carry none)
    assert form_01.status_code == 422
    assert "the section parameter 01 contradicts the section in the name (00)" in form_01.json()["error"]
    feats = det.features_of(clips[0])
    assert as_01["score"] == float(det.score_features([feats], ["01"])[0])  # the same module: bit for bit
    assert as_01["score"] != by_name["score"]
    assert as_01["threshold"] == float(det.thresholds[1])


def test_info_of_the_logmel_detector(tiny_detectors):
    detector = tiny_detectors / "logmel" / "fan" / "detector.pt"
    det = Detector.load(detector)
    info = _client(detector).get("/info").json()
    assert info["kind"] == "logmel" and info["method"] == "logmel"
    # the tiny_detectors fixture fixes logmel's scoring (select: none): the method's max / 1-NN
    assert info["scoring"] == {"pooling": "max", "gwrp_r": det.info.gwrp_r, "backend": "1nn", "per_domain": False}
    assert info["selection"] is None and info["health"] == det.info.health


def test_degenerate_detector_warns_on_stderr(tiny_detectors, clips, tmp_path):
    det = Detector.load(tiny_detectors / "logmel" / "fan" / "detector.pt")
    det.info.health = {"ok": False, "reason": "training scores differ by 0.0e+00 of their size",
                       "embedding_spread": 0.0, "score_spread": 0.0}
    bad = det.save(tmp_path / "bad.pt")
    res = CliRunner().invoke(cli_app, ["score", str(bad), str(clips[0])])
    assert res.exit_code == 0, res.output
    warning = [line for line in res.stderr.splitlines() if "degenerate detector" in line]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {bad}: degenerate detector: ")
    assert "training scores differ by 0.0e+00 of their size" in warning[0]
    assert "degenerate" not in res.stdout and res.stdout.startswith(str(clips[0]))  # still scored
    # a healthy detector: no warning
    res = CliRunner().invoke(cli_app, ["score", str(tiny_detectors / "logmel" / "fan" / "detector.pt"),
                                       str(clips[0])])
    assert res.exit_code == 0 and "degenerate" not in res.output
    # the server shows the failed check in /info
    assert _client(bad).get("/info").json()["health"] == det.info.health
    if importlib.util.find_spec("onnxruntime") is not None:  # the health travels into the ONNX file
        from dgmix.export.writer import export_onnx

        onnx_file = export_onnx(det, tmp_path / "bad.onnx").path
        res = CliRunner().invoke(cli_app, ["score", "--onnx", str(onnx_file), str(clips[0])])
        assert res.exit_code == 0, res.output
        assert f"warning: {onnx_file}: degenerate detector: " in res.stderr


def test_error_statuses(tiny_detectors, clips):
    detector = tiny_detectors / "random" / "fan" / "detector.pt"
    client = _client(detector)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(48000) * 0.1).astype(np.float32)
    nan = noise.copy()
    nan[100] = np.nan

    def check(response, status, text):
        assert response.status_code == status, response.text
        assert text in response.json()["error"]

    check(client.post("/score", content=b"RIFF not really a wave file" * 10), 415, "not a WAV or FLAC file")
    pcm = np.round(noise * 32767).astype(np.int16)  # the same 16-bit samples in both containers
    flac = client.post("/score", files={"file": ("x.flac", _wav(pcm, fmt="FLAC"), "audio/flac")},
                       data={"section": "00"})  # FLAC is read as in every verb, to the same score as its WAV
    assert flac.status_code == 200, flac.text
    assert flac.json()["score"] == client.post("/score", params={"section": "00"}, content=_wav(pcm)).json()["score"]
    check(client.post("/score", files={"file": ("x.ogg", _wav(noise, fmt="OGG"), "audio/ogg")},
                      data={"section": "00"}), 415, "x.ogg: a OGG file, not a WAV or FLAC")
    check(client.post("/score", params={"section": "00"}, content=_wav(noise[:16000])), 422,
          "shorter than one window")
    check(client.post("/score", params={"section": "00"}, content=_wav(nan, subtype="FLOAT")), 422, "NaN")
    silent = client.post("/score", params={"section": "00"}, content=_wav(np.zeros(48000, np.float32)))
    check(silent, 422, "digital silence")
    error = silent.json()["error"]
    assert "this detector refuses silent clips" in error and "pass --allow" not in error
    check(client.post("/score", params={"section": "00"}, content=clips[0].read_bytes()[:2000]), 422,
          "truncated WAV: its header says 3.00 s")  # refused as in every verb, not scored as a shorter clip
    check(client.post("/score", content=_wav(noise)), 422, "cannot tell the section")
    check(client.post("/score", params={"section": "07"}, content=_wav(noise)), 422, "unknown to this detector")
    check(client.post("/score", content=b""), 422, "empty upload")
    check(client.post("/score", files={"other": ("a.wav", _wav(noise), "audio/wav")}), 400, "no file field")
    # short clips are scored when padding is asked for, as dgmix score --pad
    assert client.post("/score", params={"section": "00", "pad": "true"}, content=_wav(noise[:16000])).status_code \
        == 200


def test_size_limit(tiny_detectors, clips):
    detector = tiny_detectors / "random" / "fan" / "detector.pt"
    big = b"\0" * (DEFAULT_MAX_BYTES + 1)
    client = _client(detector)
    r = client.post("/score", content=big)
    assert r.status_code == 413 and "over the limit of 10485760 bytes" in r.json()["error"]
    # no Content-Length (chunked): cut off while reading
    r = client.post("/score", content=iter([big[:DEFAULT_MAX_BYTES], big[DEFAULT_MAX_BYTES:]]))
    assert r.status_code == 413, r.text
    # a smaller limit: the clip itself is too big, raw or as the file of a multipart body
    data = clips[0].read_bytes()
    small = _client(detector, max_bytes=len(data) - 1)
    assert small.post("/score", content=data).status_code == 413
    r = small.post("/score", files={"file": (clips[0].name, data, "audio/wav")})
    assert r.status_code == 413 and f"over the limit of {len(data) - 1}" in r.json()["error"]
    assert _client(detector, max_bytes=len(data)).post("/score", params={"section": "00"}, content=data).status_code \
        == 200
    huge_form = {"file": (clips[0].name, b"\0" * (len(data) + MULTIPART_OVERHEAD), "audio/wav")}
    assert small.post("/score", files=huge_form).status_code == 413


def test_serves_an_onnx_detector_like_dgmix_score_onnx(tiny_detectors, clips, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / "logmel.onnx"
    res = CliRunner().invoke(cli_app, ["export", str(tiny_detectors / "logmel" / "fan" / "detector.pt"),
                                       "--out", str(onnx_file)])
    assert res.exit_code == 0, res.output
    expected = _cli_scores(None, clips, tmp_path, "--onnx", str(onnx_file))
    client = _client(onnx_file)
    for clip in clips:
        body = client.post("/score", files={"file": (clip.name, clip.read_bytes(), "audio/wav")}).json()
        assert body["score"] == expected[clip.name][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_uvicorn_on_loopback(tiny_detectors, clips, tmp_path):
    detector = tiny_detectors / "random" / "fan" / "detector.pt"
    expected = _cli_scores(detector, clips, tmp_path)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(dgmix.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "dgmix", "serve", str(detector), "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=60) as http:
            for clip in clips:
                r = http.post("/score", files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
                assert r.status_code == 200, r.text
                # another process (same module, same kernels): equal up to the last bits at most
                assert r.json()["score"] == pytest.approx(expected[clip.name][0], rel=1e-9, abs=0)
                raw = http.post("/score", params={"filename": clip.name}, content=clip.read_bytes())
                assert raw.json() == r.json()
            assert http.post("/score", content=b"junk" * 100).status_code == 415
            r = http.post("/score", content=b"\0" * (DEFAULT_MAX_BYTES + 1))
            assert r.status_code == 413 and "over the limit" in r.json()["error"]
            info = http.get("/info").json()
            assert info["sections"] == ["00", "01"] and info["kind"] == "encoder"
            assert info["scoring"]["backend"] == "1nn" and info["selection"] is None and info["health"]["ok"]
            assert http.get("/health").status_code == 200  # still alive after the errors
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_core_imports_no_extra_and_missing_extra_is_one_line(tiny_detectors, monkeypatch):
    code = ("import sys, dgmix.cli, dgmix.serve, dgmix.export.writer; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'onnx', 'onnxruntime') if m in sys.modules))")
    src = str(Path(dgmix.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=src))
    assert out.stdout.strip() == "[]"
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the [serve] extra were not installed
    res = CliRunner().invoke(cli_app, ["serve", str(tiny_detectors / "random" / "fan" / "detector.pt")])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "error: dgmix serve needs the 'fastapi' package, which is not installed; "
        "run: pip install -e '.[serve]' in the dgmix source folder"]
