"""dgmix.data.scan and the ``dgmix data`` command on small generated trees."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

import dgmix
from dgmix.data import scan
from dgmix.errors import InputError


def _wav(path: Path, seconds: float = 0.05, rate: int = 16000, channels: int = 1,
         seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    x = 0.1 * np.random.default_rng(seed).standard_normal((n, channels))
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


def _counts(records) -> Counter:
    return Counter((r.machine, r.section, r.domain, r.split, r.label) for r in records)


# ---------------------------------------------------------------- DCASE dev/eval tree


@pytest.fixture
def dcase_tree(tmp_path: Path) -> Path:
    root = tmp_path / "dcase"
    dev, ev = root / "dev_data", root / "eval_data"
    for name in [
        "section_00_source_train_normal_0000_m-n_W.wav",
        "section_00_target_train_normal_0001_m-n_X.wav",
    ]:
        _wav(dev / "fan" / "train" / name)
    for name in [
        "section_00_source_test_anomaly_0022_m-n_W.wav",
        "section_00_target_test_normal_0021_m-n_Y.wav",
        "section_01_source_test_normal_0000.wav",
    ]:
        _wav(dev / "fan" / "test" / name)
    _wav(dev / "valve" / "test" / "section_00_source_test_anomaly_0025_pat_01.wav")
    _wav(dev / "valve" / "train" / "section_00_target_train_normal_0003_pat_02.wav")
    (dev / "fan" / "attributes_01.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\nfan/test/section_01_source_test_normal_0000.wav,m-n,Q,x,1\n")
    (dev / "fan" / "readme.txt").write_text("ignored")
    (dev / "fan" / "test" / "notes.md").write_text("ignored")
    (dev / "fan" / "test" / "section_00_source_test_normal_0001.mp3").write_bytes(b"ID3")
    (dev / "fan" / "test" / "take_3.wav").write_bytes(b"not parsed")
    (dev / "fan" / "test" / ".hidden.wav").write_bytes(b"skipped")
    _wav(ev / "fan" / "train" / "section_03_source_train_normal_0000_m-n_Z.wav")
    for i in range(3):
        _wav(ev / "fan" / "test" / f"section_03_{i:04d}.wav", seed=i)
    (ev / "fan" / "attributes_03.csv").write_text(
        "file_name,d1p,d1v\nfan/test/section_03_0001.wav,m-n,V\n")
    gt = root / "gt"
    (gt / "ground_truth_data").mkdir(parents=True)
    (gt / "ground_truth_domain").mkdir()
    (gt / "ground_truth_data" / "ground_truth_fan_section_03_test.csv").write_text(
        "section_03_0000.wav,1\nsection_03_0001.wav,0\nsection_03_0099.wav,1\n")
    (gt / "ground_truth_domain" / "ground_truth_fan_section_03_test.csv").write_text(
        "section_03_0000.wav,0\nsection_03_0001.wav,1\n")
    return root


def test_scan_dcase_tree(dcase_tree: Path) -> None:
    ds = scan(dcase_tree)
    assert _counts(ds.records) == Counter({
        ("fan", "00", "source", "train", "normal"): 1,
        ("fan", "00", "target", "train", "normal"): 1,
        ("fan", "00", "source", "test", "anomaly"): 1,
        ("fan", "00", "target", "test", "normal"): 1,
        ("fan", "01", "source", "test", "normal"): 1,
        ("fan", "03", "source", "train", "normal"): 1,
        ("fan", "03", "source", "test", "anomaly"): 1,   # from ground truth
        ("fan", "03", "target", "test", "normal"): 1,    # from ground truth
        ("fan", "03", "unknown", "test", "unknown"): 1,  # not in the ground truth
        ("valve", "00", "source", "test", "anomaly"): 1,
        ("valve", "00", "target", "train", "normal"): 1,
    })
    err = {p.name: msg for p, msg in ds.errors}
    assert set(err) == {"section_00_source_test_normal_0001.mp3", "take_3.wav"}
    assert "not a WAV or FLAC file" in err["section_00_source_test_normal_0001.mp3"]
    assert "file name not recognised" in err["take_3.wav"]
    assert ds.machines() == ["fan", "valve"]
    # attributes_XX.csv merged into the records it names
    by_name = {r.name: r for r in ds.records}
    assert by_name["section_01_source_test_normal_0000.wav"].attributes == {"m-n": "Q", "x": "1"}
    assert by_name["section_03_0001.wav"].attributes == {"m-n": "V"}
    assert by_name["section_00_source_test_anomaly_0022_m-n_W.wav"].attributes == {
        "m-n": "W", "_raw": "m-n_W"}
    # sorted by (machine, section, split, path), and the same on a second scan
    keys = [(r.machine, r.section, r.split, str(r.path)) for r in ds.records]
    assert keys == sorted(keys)
    assert scan(dcase_tree).records == ds.records


def test_dataset_select_and_counts(dcase_tree: Path) -> None:
    ds = scan(dcase_tree)
    assert len(ds.select(machine="FAN", split="train")) == 3
    assert [r.name for r in ds.select(machine="fan", section="3", split="test",
                                      label="anomaly")] == ["section_03_0000.wav"]
    assert ds.select(machine="pump") == []
    counts = ds.counts()
    assert sum(c["n"] for c in counts) == len(ds.records) == 11
    assert set(counts[0]) == {"machine", "section", "domain", "split", "label", "n"}
    assert Counter({tuple(c[k] for k in ("machine", "section", "domain", "split", "label")):
                    c["n"] for c in counts}) == _counts(ds.records)


def test_scan_one_machine_folder_and_explicit_ground_truth(dcase_tree: Path) -> None:
    # Scanning eval_data/fan only: the machine comes from the root's own name; the ground truth
    # (outside this root) must be given.
    root = dcase_tree / "eval_data" / "fan"
    labels = Counter(r.label for r in scan(root).records)
    assert labels == Counter({"unknown": 3, "normal": 1})
    ds = scan(root, ground_truth=dcase_tree / "gt")
    assert ds.machines() == ["fan"]
    assert Counter(r.label for r in ds.records) == Counter({"normal": 2, "anomaly": 1,
                                                             "unknown": 1})
    ds2 = scan(dcase_tree / "eval_data" / "fan" / "test", ground_truth=dcase_tree / "gt")
    assert ds2.machines() == ["fan"] and len(ds2.records) == 3


def test_ground_truth_contradiction_is_an_error(tmp_path: Path) -> None:
    name = "section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav"
    _wav(tmp_path / "ToyCar" / "test" / name)
    gt = tmp_path / "ground_truth_data"
    gt.mkdir()
    (gt / "ground_truth_toycar_section_00_test.csv").write_text(f"{name},1\n")
    ds = scan(tmp_path)
    assert ds.records == []
    assert len(ds.errors) == 1 and "ground truth says 'anomaly'" in ds.errors[0][1]


def test_prefixed_names_mimii_and_plain_layouts(tmp_path: Path) -> None:
    folder = tmp_path / "result" / "weekly" / "data_collection"
    for name in [
        "ToyCar_test_section_00_source_test_normal_0028_car_C2_spd_34V_mic_1.wav",
        "ToyTrain_test_section_00_target_test_anomaly_0015_car_A2_spd_6_mic_2.wav",
        "bearing_train_section_00_source_train_normal_0046_vel_21_loc_A.wav",
    ]:
        _wav(folder / name)
    for i in range(2):
        _wav(tmp_path / "mimii" / "fan" / "id_00" / "normal" / f"{i:08d}.wav", channels=8)
        _wav(tmp_path / "mimii" / "fan" / "id_02" / "abnormal" / f"{i:08d}.wav", channels=8)
    _wav(tmp_path / "plain" / "pump" / "train" / "a.wav")
    _wav(tmp_path / "plain" / "pump" / "train" / "b.wav")
    _wav(tmp_path / "plain" / "pump" / "test" / "normal" / "c.wav")
    _wav(tmp_path / "plain" / "pump" / "test" / "anomaly" / "d.wav")
    ds = scan(tmp_path, check_audio=True)
    assert ds.errors == []
    assert _counts(ds.records) == Counter({
        ("ToyCar", "00", "source", "test", "normal"): 1,
        ("ToyTrain", "00", "target", "test", "anomaly"): 1,
        ("bearing", "00", "source", "train", "normal"): 1,
        # MIMII: the seeded split (no anomalies in id_00, so no normal test clip there)
        ("fan", "00", "unknown", "train", "normal"): 2,
        ("fan", "02", "unknown", "test", "anomaly"): 2,
        ("pump", "00", "unknown", "train", "normal"): 2,
        ("pump", "00", "unknown", "test", "normal"): 1,
        ("pump", "00", "unknown", "test", "anomaly"): 1,
    })
    assert {r.split_given for r in ds.records if r.machine == "fan"} == {False}
    assert {r.split_given for r in ds.records if r.machine != "fan"} == {True}


def test_scan_check_audio_and_on_error(tmp_path: Path) -> None:
    good = _wav(tmp_path / "valve" / "test" / "section_00_source_test_anomaly_0025_pat_01.wav")
    empty = tmp_path / "valve" / "test" / "section_00_source_test_anomaly_0026_pat_00.wav"
    sf.write(str(empty), np.zeros((0, 1)), 16000)
    text = tmp_path / "valve" / "test" / "section_00_source_test_anomaly_0027_pat_01.wav"
    text.write_text("hello")
    assert len(scan(tmp_path).records) == 3  # names only
    ds = scan(tmp_path, check_audio=True)
    assert [r.path for r in ds.records] == [good]
    assert dict(ds.errors) == {empty: "empty audio file (0 samples)",
                               text: dict(ds.errors)[text]}
    assert dict(ds.errors)[text].startswith("not a readable audio file")
    with pytest.raises(InputError) as ei:
        scan(tmp_path, check_audio=True, on_error="fail")
    assert ei.value.path == str(empty)  # the first bad file in sorted order


def test_scan_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset folder not found"):
        scan(tmp_path / "nope")
    f = _wav(tmp_path / "x.wav")
    with pytest.raises(InputError, match="not a folder"):
        scan(f)


# ---------------------------------------------------------------- CLI


def _register():
    """``dgmix.cli.data.register``, also while sibling CLI modules are not written yet."""
    try:
        from dgmix.cli.data import register
    except ModuleNotFoundError as e:  # dgmix/cli/__init__.py imports every verb module
        if not (e.name or "").startswith("dgmix.cli.") or e.name == "dgmix.cli.data":
            raise
        path = Path(dgmix.__file__).parent / "cli" / "data.py"
        spec = importlib.util.spec_from_file_location("_dgmix_cli_data_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        register = module.register
    return register


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.callback()
    def _main() -> None:
        """Test app."""

    _register()(app)
    return app


@pytest.fixture
def cli_tree(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    v = root / "valve"
    _wav(v / "train" / "section_00_source_train_normal_0000_pat_00.wav", 1.0, seed=1)
    _wav(v / "train" / "section_00_source_train_normal_0001_pat_01.wav", 2.0, seed=2)
    _wav(v / "train" / "section_00_target_train_normal_0002_pat_02.wav", 1.5, channels=2, seed=3)
    _wav(v / "test" / "section_00_source_test_anomaly_0025_pat_01.wav", 3.0, seed=4)
    _wav(v / "test" / "section_00_target_test_normal_0003_pat_02.wav", 1.0, rate=44100, seed=5)
    (v / "test" / "section_00_source_test_normal_0004_pat_00.wav").write_bytes(
        np.random.default_rng(9).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    sf.write(str(v / "test" / "section_00_source_test_normal_0005_pat_00.wav"),
             np.zeros((0, 1)), 16000)
    (v / "test" / "section_00_target_test_anomaly_0006_pat_03.wav").write_text("a text file\n")
    return root


_EXPECTED = {
    ("valve", "00", "source", "train", "normal"): 2,
    ("valve", "00", "target", "train", "normal"): 1,  # stereo
    ("valve", "00", "source", "test", "anomaly"): 1,
    ("valve", "00", "target", "test", "normal"): 1,   # 44.1 kHz
}
_BAD = {"section_00_source_test_normal_0004_pat_00.wav",
        "section_00_source_test_normal_0005_pat_00.wav",
        "section_00_target_test_anomaly_0006_pat_03.wav"}


def test_cli_json(cli_tree: Path) -> None:
    res = CliRunner().invoke(_app(), ["data", str(cli_tree), "--json", "--pad"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"counts", "errors", "split", "warnings"}
    got = {(c["machine"], c["section"], c["domain"], c["split"], c["label"]): c["n"]
           for c in doc["counts"]}
    assert got == _EXPECTED
    assert {Path(e["path"]).name for e in doc["errors"]} == _BAD
    assert all(e["error"] and "\n" not in e["error"] for e in doc["errors"])

    res = CliRunner().invoke(_app(), ["data", str(cli_tree), "--json", "--no-check-audio"])
    doc = json.loads(res.stdout)
    assert sum(c["n"] for c in doc["counts"]) == 8 and doc["errors"] == []


def test_cli_table(cli_tree: Path) -> None:
    res = CliRunner().invoke(_app(), ["data", str(cli_tree), "--pad"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["machine", "section", "domain", "split", "label", "n"]
    rows = {tuple(ln.split()[:5]): int(ln.split()[5]) for ln in lines[1:1 + len(_EXPECTED)]}
    assert rows == _EXPECTED
    assert "total: 5 clips" in res.stdout
    assert "3 file(s) could not be used" in res.stdout
    for name in _BAD:
        assert name in res.stdout


def test_cli_on_error_fail_and_missing_root(cli_tree: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["data", str(cli_tree), "--on-error", "fail", "--pad"])
    assert res.exit_code == 1
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "section_00_source_test_normal_0004_pat_00.wav" in err  # first bad file, sorted
    res = CliRunner().invoke(_app(), ["data", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'missing'}: dataset folder not found"
    res = CliRunner().invoke(_app(), ["data", str(cli_tree), "--ground-truth",
                                      str(tmp_path / "nogt")])
    assert res.exit_code == 2 and "ground-truth folder not found" in res.stderr


def test_cli_ground_truth_option(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    for i in range(4):
        _wav(root / "gearbox" / "test" / f"section_00_{i:04d}.wav", seed=i)
    gt = tmp_path / "GT"
    (gt / "ground_truth_data").mkdir(parents=True)
    (gt / "ground_truth_domain").mkdir()
    (gt / "ground_truth_data" / "ground_truth_gearbox_section_00_test.csv").write_text(
        "".join(f"section_00_{i:04d}.wav,{i % 2}\n" for i in range(4)))
    (gt / "ground_truth_domain" / "ground_truth_gearbox_section_00_test.csv").write_text(
        "".join(f"section_00_{i:04d}.wav,{int(i >= 2)}\n" for i in range(4)))
    res = CliRunner().invoke(_app(), ["data", str(root), "--json", "--pad", "--ground-truth", str(gt)])
    assert res.exit_code == 0, res.output
    got = {(c["domain"], c["label"]): c["n"] for c in json.loads(res.stdout)["counts"]}
    assert got == {("source", "normal"): 1, ("source", "anomaly"): 1,
                   ("target", "normal"): 1, ("target", "anomaly"): 1}
