"""Issue 15: data sets as users have them, generated here from ``dgmix synth`` clips.

* A MIMII 2019 folder (``fan/id_XX/{normal,abnormal}/NNNNNNNN.wav``, one ID 8-channel, file names
  reused between ``normal/`` and ``abnormal/`` as MIMII does): the seeded split, then data, run,
  score and evaluate.
* A DCASE folder whose first machine type has an empty test group (no source-domain normal clip in
  one section): the run goes on to the next machine type and every command reports n/a values.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.data import SplitConfig, assign_split, parse_test_normals, scan
from dgmix.errors import InputError
from dgmix.scoring.csvio import read_scores

RUN_METHODS = "logmel"  # no training: the training stages' split is checked on its own below


def _wav(path: Path, n: int = 800, channels: int = 1, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal((n, channels))
    sf.write(str(path), x, 16000, subtype="PCM_16")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ the split itself


def _mimii_names(root: Path, n_normal: int, n_anomaly: int, ids=("00", "02")) -> None:
    for sec in ids:
        for i in range(n_normal):
            _wav(root / "fan" / f"id_{sec}" / "normal" / f"{i:08d}.wav", seed=i)
        for i in range(n_anomaly):
            _wav(root / "fan" / f"id_{sec}" / "abnormal" / f"{i:08d}.wav", seed=100 + i)


def _split(ds) -> dict[str, str]:
    return {r.path.relative_to(ds.root).as_posix(): r.split for r in ds.records}


def test_mimii_protocol_seeded_and_per_id(tmp_path: Path) -> None:
    _mimii_names(tmp_path / "a", n_normal=12, n_anomaly=4)
    ds = scan(tmp_path / "a")
    for sec in ("00", "02"):
        test = ds.select(machine="fan", section=sec, split="test")
        assert sum(r.label == "anomaly" for r in test) == 4  # every anomalous clip is a test clip
        assert sum(r.label == "normal" for r in test) == 4  # plus as many normal clips
        assert len(ds.select(machine="fan", section=sec, split="train", label="normal")) == 8
    assert ds.select(split="train", label="anomaly") == []
    assert [(g.section, g.normal, g.anomaly, g.test_normal, g.capped) for g in ds.splits] == [
        ("00", 12, 4, 4, False), ("02", 12, 4, 4, False)]
    # the two IDs are drawn independently, the draw depends on the seed, not on where the data lives
    picks = {sec: sorted(r.name for r in ds.select(section=sec, split="test", label="normal"))
             for sec in ("00", "02")}
    assert picks["00"] != picks["02"]
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    assert _split(scan(tmp_path / "elsewhere" / "b")) == _split(ds)
    assert _split(scan(tmp_path / "a", split=SplitConfig(seed=0))) == _split(ds)
    assert _split(scan(tmp_path / "a", split=SplitConfig(seed=1))) != _split(ds)


def test_split_overrides_cap_and_errors(tmp_path: Path) -> None:
    _mimii_names(tmp_path, n_normal=10, n_anomaly=10, ids=("00",))
    # match, capped: 10 anomalies but only half of the 10 normals go to the test set
    (g,) = scan(tmp_path).splits
    assert (g.test_normal, g.train_normal, g.capped) == (5, 5, True)
    (g,) = scan(tmp_path, split=SplitConfig(test_normals=3)).splits
    assert (g.test_normal, g.train_normal) == (3, 7)
    (g,) = scan(tmp_path, split=SplitConfig(test_normals=0.2)).splits
    assert (g.test_normal, g.train_normal) == (2, 8)
    with pytest.raises(InputError, match="fan id 00: test_normals=10 leaves no normal clip to train on"):
        scan(tmp_path, split=SplitConfig(test_normals=10))
    assert parse_test_normals("7") == 7 and parse_test_normals("0.25") == 0.25
    assert parse_test_normals("MATCH") == "match"
    for bad in ("1.5", "-2", "half"):
        with pytest.raises(InputError, match="--test-normals"):
            parse_test_normals(bad)


def test_plain_layout_without_split_and_score_names(tmp_path: Path) -> None:
    for i in range(6):
        _wav(tmp_path / "pump" / "normal" / f"rec{i}.wav", seed=i)
    for i in range(2):
        _wav(tmp_path / "pump" / "anomaly" / f"rec{i}.wav", seed=50 + i)
    ds = scan(tmp_path)
    assert {(r.machine, r.section, r.domain) for r in ds.records} == {("pump", "00", "unknown")}
    assert len(ds.select(split="test", label="normal")) == 2
    assert len(ds.select(split="test", label="anomaly")) == 2
    test = ds.select(split="test")
    names = [r.score_name for r in test]
    assert len(set(names)) == len(names)  # rec0.wav exists in normal/ and anomaly/
    assert {n.split("_id_00_")[0] for n in names} == {"normal", "anomaly"}
    # records whose layout carries a split are left alone
    given = [dataclasses.replace(r, split_given=True, split="train") for r in ds.records]
    assert assign_split(given, SplitConfig()) == (given, [])


# ------------------------------------------------------------------ data sets from dgmix synth


@pytest.fixture(scope="module")
def mimii_root(tiny_synth: Path, tmp_path_factory) -> Path:
    """MIMII 2019 layout from the synthetic fan clips: section XX -> id_XX; id_00 is 8-channel."""
    root = tmp_path_factory.mktemp("mimii") / "fan_6dB"
    for sec in ("00", "01"):
        clips = sorted((tiny_synth / "fan").glob(f"*/section_{sec}_*.wav"))
        counters = {"normal": 0, "abnormal": 0}
        for clip in clips:
            folder = "abnormal" if "_anomaly_" in clip.name else "normal"
            x, sr = sf.read(str(clip), dtype="float32")
            if sec == "00":  # 8 microphones: the same source with per-channel gain and a little noise
                rng = np.random.default_rng(counters[folder])
                x = np.stack([g * x for g in np.linspace(0.6, 1.0, 8)], axis=1)
                x = x + 1e-3 * rng.standard_normal(x.shape).astype(np.float32)
            dest = root / "fan" / f"id_{sec}" / folder / f"{counters[folder]:08d}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(dest), x, sr, subtype="PCM_16")
            counters[folder] += 1
    return root


@pytest.fixture(scope="module")
def mimii_run(mimii_root: Path, feature_cache: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("mimii_run")
    res = CliRunner().invoke(app, ["run", "--data", str(mimii_root), "--methods", RUN_METHODS, "--preset", "tiny",
                                   "--out", str(out), "--cache", str(feature_cache), "--no-progress",
                                   "--no-paper-reference"])
    return out, res


def test_mimii_data_shows_the_split(mimii_root: Path) -> None:
    res = CliRunner().invoke(app, ["data", str(mimii_root)])
    assert res.exit_code == 0, res.output
    assert "fan      00       unknown  test   anomaly  4" in res.output
    assert "fan id 00: test = 4 anomalous + 4 of 12 normal clips; train = 8 normal clips" in res.output
    assert ("warning: fan section 00: no target-domain normal test clips (no domains in this layout: its clips "
            "count as source); AUC-T n/a, left out of the official score") in res.output
    res = CliRunner().invoke(app, ["data", str(mimii_root), "--test-normals", "2", "--json"])
    groups = json.loads(res.stdout)["split"]["groups"]
    assert [(g["section"], g["test_normal"], g["train_normal"]) for g in groups] == [("00", 2, 10), ("01", 2, 10)]
    res = CliRunner().invoke(app, ["data", str(mimii_root), "--test-normals", "0.9x"])
    assert res.exit_code == 2 and "--test-normals" in res.output


def test_mimii_run_score_evaluate(mimii_root: Path, mimii_run, feature_cache: Path, tmp_path: Path) -> None:
    out, res = mimii_run
    assert res.exit_code == 0, res.output
    # the split is printed once, recorded in split.csv and config.yaml, and the warning once per section
    assert res.output.count("fan id 00: test = 4 anomalous + 4 of 12 normal clips") == 1
    assert res.output.count("warning: fan section 01: no target-domain normal test clips") == 1
    rows = _read_csv(out / "split.csv")
    assert len(rows) == 32 and {r["split_from"] for r in rows} == {"seeded"}
    ds = scan(mimii_root)
    assert {r["path"]: r["split"] for r in rows} == _split(ds)
    assert "test_normals: match" in (out / "config.yaml").read_text()
    # results: AUC-S and pAUC per section, AUC-T n/a; the official score averages over the 4 others
    results = json.loads((out / "results.json").read_text())
    for method in RUN_METHODS.split(","):
        for sec in ("00", "01"):
            r = results[method]["fan"][sec]
            assert r["auc_target"] is None and 0.0 <= r["auc_source"] <= 1.0 and 0.0 <= r["pauc"] <= 1.0
            assert r["empty_groups"] == ["target-domain normal"]
        assert results[method]["official_score_values"]["n_values"] == 4
        assert results[method]["official_score_values"]["n_expected"] == 6
    # score files hold exactly the test clips, named DCASE-2020 style (unique although MIMII reuses names)
    by_score_name = {r["score_name"]: r for r in rows if r["split"] == "test"}
    for sec in ("00", "01"):
        names, _ = read_scores(out / "logmel" / "scores" / f"anomaly_score_fan_section_{sec}_test.csv")
        assert sorted(names) == sorted(n for n, r in by_score_name.items() if r["section"] == sec)
    # dgmix evaluate on the run's score files gives the run's official score and the same warning
    ev = CliRunner().invoke(app, ["evaluate", str(out / "logmel" / "scores"), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["scores"]["official_score"] == pytest.approx(results["logmel"]["official_score"])
    assert ev.stderr.count("warning: fan section") == 2
    # dgmix score on a test clip (8-channel) reproduces the run's score
    clip = next(r for r in rows if r["split"] == "test" and r["section"] == "00")
    names, scores = read_scores(out / "logmel" / "scores" / "anomaly_score_fan_section_00_test.csv")
    sc = CliRunner().invoke(app, ["score", str(out / "logmel" / "fan" / "detector.pt"),
                                  str(mimii_root / clip["path"])])
    assert sc.exit_code == 0, sc.output
    assert float(sc.stdout.split("\t")[1]) == pytest.approx(scores[names.index(clip["score_name"])], rel=1e-5, abs=2e-6)
    # the recorded config repeats the split
    again = CliRunner().invoke(app, ["data", str(mimii_root), "--config", str(out / "config.yaml"), "--json"])
    assert json.loads(again.stdout)["split"]["config"]["test_normals"] == "match"


def test_training_stages_use_the_split(mimii_root: Path, feature_cache: Path) -> None:
    """pretrain / finetune read their clips through training_clips, with the run's split settings."""
    from dgmix.config import load_config
    from dgmix.training.common import training_clips
    from dgmix.training.distributed import DistContext

    cfg = load_config("tiny", None, {"split": {"test_normals": 2}})
    clips = training_clips(mimii_root, "fan", cfg, feature_cache, DistContext(), progress=False)
    want = scan(mimii_root, split=cfg.split).select(machine="fan", split="train")
    assert sorted(r.path for r in clips.records) == sorted(r.path for r in want)
    assert len(want) == 20 and {r.label for r in want} == {"normal"}


@pytest.fixture(scope="module")
def dcase_gap(tiny_synth: Path, tmp_path_factory) -> Path:
    """The synthetic fan set, plus a copy named ToyCar (run first) whose section 00 has no
    source-domain normal test clip."""
    root = tmp_path_factory.mktemp("gap") / "dev_data"
    shutil.copytree(tiny_synth / "fan", root / "fan")
    shutil.copytree(tiny_synth / "fan", root / "ToyCar")
    for clip in (root / "ToyCar" / "test").glob("section_00_source_test_normal_*.wav"):
        clip.unlink()
    return root


def test_dcase_with_an_empty_group(dcase_gap: Path, feature_cache: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["data", str(dcase_gap)])
    assert res.exit_code == 0
    warn = ("warning: ToyCar section 00: no source-domain normal test clips; AUC-S n/a, left out of the "
            "official score")
    assert [line for line in res.output.splitlines() if line.startswith("warning:")] == [warn]
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--data", str(dcase_gap), "--methods", "logmel", "--preset", "tiny",
                                   "--out", str(out), "--cache", str(feature_cache), "--no-progress",
                                   "--no-paper-reference"])
    assert res.exit_code == 0, res.output
    assert res.output.count(warn) == 1
    results = json.loads((out / "results.json").read_text())
    for method in ["logmel"]:
        toycar, fan = results[method]["ToyCar"], results[method]["fan"]
        assert toycar["00"]["auc_source"] is None and toycar["00"]["auc_target"] is not None
        assert toycar["00"]["pauc"] is not None and toycar["01"]["auc_source"] is not None
        assert all(fan[s][k] is not None for s in ("00", "01") for k in ("auc_source", "auc_target", "pauc"))
        assert results[method]["official_score_values"]["left_out"] == [
            {"machine": "ToyCar", "section": "00", "value": "auc_source", "empty_groups": ["source-domain normal"]}]
    md = (out / "results.md").read_text()
    assert "over 11 of 12 values; n/a, left out: ToyCar 00 AUC-S (no source-domain normal test clips)" in md
    assert "| ToyCar | 00 | n/a |" in md
    ev = CliRunner().invoke(app, ["evaluate", str(out / "logmel" / "scores"), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["scores"]["official_score"] == pytest.approx(results["logmel"]["official_score"])
    assert ev.stderr.strip() == warn
    with open(out / "split.csv", newline="") as fh:
        assert {r["split_from"] for r in csv.DictReader(fh)} == {"layout"}
