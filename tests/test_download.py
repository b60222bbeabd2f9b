"""``dgmix download`` against a fake Zenodo record served from a loopback HTTP server: zips of
clips written by ``dgmix synth``, a connection cut mid-file (the next run resumes with Range), a
checksum mismatch (never unpacked), a second run that does nothing, and the layout ``dgmix data``
reads."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import threading
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.data import scan
from dgmix.download import DownloadError, download_dataset
from dgmix.download.records import RECORDS, parse_record
from dgmix.errors import InputError

DEV_ID = RECORDS["dcase2022"]["dev"]


class FakeZenodo(http.server.ThreadingHTTPServer):
    """Serves ``/api/records/<id>`` and ``/records/<id>/files/<key>`` from memory, honours Range, and
    can cut one file's transfer after ``cut_after`` bytes; records every request's Range header."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes], md5_override: dict[str, str] | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.md5_override = md5_override or {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, rid: int) -> dict:
        # links point at zenodo.org, as the real record's do; --base-url moves them onto the mirror
        return {"id": rid, "files": [
            {"key": k, "size": len(v), "checksum": "md5:" + self.md5_override.get(k, hashlib.md5(v).hexdigest()),
             "links": {"self": f"https://zenodo.org/records/{rid}/files/{k}"}} for k, v in self.files.items()]}


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeZenodo

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        m = re.fullmatch(r"/api/records/(\d+)", self.path)
        if m:
            body = json.dumps(self.server.record(int(m[1]))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        m = re.fullmatch(r"/records/(\d+)/files/(.+)", self.path)
        if not m or m[2] not in self.server.files:
            self.send_error(404)
            return
        data = self.server.files[m[2]]
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cut.pop(m[2], None)
        if cut is not None:
            self.wfile.write(data[start:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(data[start:])


def _zip_of(folder: Path, arc_root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(arc_root).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def zips(tiny_synth) -> dict[str, bytes]:
    """Two zips laid out as DCASE 2022's dev_data_<machine>.zip: ``fan/train/...`` and ``fan/test/...``
    (the tiny set has one machine, so the second zip holds the attributes file and a copy of the test clips
    under another machine name)."""
    fan = _zip_of(tiny_synth / "fan", tiny_synth)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted((tiny_synth / "fan" / "train").glob("*.wav")):
            zf.write(p, "dev_data/valve/train/" + p.name)  # a release that wraps machines in dev_data/
        for p in sorted((tiny_synth / "fan" / "test").glob("*.wav")):
            zf.write(p, "dev_data/valve/test/" + p.name)
    return {"dev_data_fan.zip": fan, "dev_data_valve.zip": buf.getvalue()}


@pytest.fixture()
def server(zips):
    srv = FakeZenodo(dict(zips))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_parse_record_checks_entries():
    ok = {"files": [{"key": "a.zip", "size": 3, "checksum": "md5:" + "0" * 32,
                     "links": {"self": "https://zenodo.org/records/1/files/a.zip"}}]}
    [f] = parse_record(ok, 1, base="http://127.0.0.1:9/mirror")
    assert f.url == "http://127.0.0.1:9/mirror/records/1/files/a.zip" and f.md5 == "0" * 32
    bad = json.loads(json.dumps(ok))
    bad["files"][0]["checksum"] = "sha1:abc"
    with pytest.raises(InputError, match="md5"):
        parse_record(bad, 1)
    evil = json.loads(json.dumps(ok))
    evil["files"][0]["key"] = "../x.zip"
    with pytest.raises(InputError, match="unsafe"):
        parse_record(evil, 1)


def test_cut_resume_verify_unpack_and_second_run(server, zips, tmp_path, tiny_synth):
    to = tmp_path / "data"
    cut_at = len(zips["dev_data_fan.zip"]) // 3
    server.cut["dev_data_fan.zip"] = cut_at
    lines: list[str] = []
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download_dataset("dcase2022", ["dev"], to, server.base, echo=lines.append)
    part = to / "zips" / str(DEV_ID) / "dev_data_fan.zip.part"
    assert part.stat().st_size == cut_at
    assert not (to / "dev_data" / "fan").exists()  # an incomplete file is never unpacked
    assert (to / "dev_data" / "valve" / "train").is_dir()  # the other zip went through

    server.requests.clear()
    s = download_dataset("dcase2022", ["dev"], to, server.base, echo=lines.append)
    assert s.downloaded == ["dev_data_fan.zip"] and s.already == ["dev_data_valve.zip"]
    assert (f"/records/{DEV_ID}/files/dev_data_fan.zip", f"bytes={cut_at}-") in server.requests
    assert not part.exists() and not (to / "zips" / str(DEV_ID) / "dev_data_fan.zip").exists()
    src = sorted(p.relative_to(tiny_synth / "fan").as_posix() for p in (tiny_synth / "fan").rglob("*") if p.is_file())
    got = sorted(p.relative_to(to / "dev_data" / "fan").as_posix()
                 for p in (to / "dev_data" / "fan").rglob("*") if p.is_file())
    assert got == src
    wav = next((tiny_synth / "fan" / "test").glob("*.wav"))
    assert (to / "dev_data" / "fan" / "test" / wav.name).read_bytes() == wav.read_bytes()

    ds = scan(to)
    assert ds.machines() == ["fan", "valve"] and not ds.errors
    assert len(ds.select(machine="fan")) == len(scan(tiny_synth).select(machine="fan"))

    server.requests.clear()
    s = download_dataset("dcase2022", ["dev"], to, server.base, echo=lines.append)
    assert s.downloaded == [] and s.unpacked == [] and len(s.already) == 2
    assert server.requests == []  # the record JSON is cached: not even a listing


def test_checksum_mismatch_is_never_unpacked(zips, tmp_path):
    srv = FakeZenodo(dict(zips), md5_override={"dev_data_fan.zip": "f" * 32})
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        to = tmp_path / "data"
        with pytest.raises(DownloadError, match="does not match"):
            download_dataset("dcase2022", ["dev"], to, srv.base, echo=lambda s: None)
        assert (to / "zips" / str(DEV_ID) / "dev_data_fan.zip.bad").is_file()
        assert not (to / "dev_data" / "fan").exists()
        assert not (to / "zips" / str(DEV_ID) / "dev_data_fan.zip.unpacked").exists()
    finally:
        srv.shutdown()
        srv.server_close()


def test_cli_machines_filter_and_second_run(server, tmp_path):
    to = tmp_path / "d"
    runner = CliRunner()
    args = ["download", "dcase2022", "--dev", "--machines", "fan", "--to", str(to), "--base-url", server.base]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "verified (md5) and unpacked" in r.output and "1 zips downloaded" in r.output
    assert (to / "dev_data" / "fan").is_dir() and not (to / "dev_data" / "valve").exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "nothing to do: 1 zips already verified and unpacked" in r.output


def test_cli_errors_are_one_line(server, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["download", "dcase2019", "--to", str(tmp_path)])
    assert r.exit_code == 2 and "unknown data set" in r.output
    server.cut["dev_data_fan.zip"] = 100
    r = runner.invoke(app, ["download", "dcase2022", "--to", str(tmp_path / "x"), "--base-url", server.base])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "run the command again to resume" in r.output
    r = runner.invoke(app, ["download", "dcase2022", "--to", str(tmp_path / "y"), "--base-url", "http://127.0.0.1:9"])
    assert r.exit_code == 1 and "cannot list the record" in r.output
