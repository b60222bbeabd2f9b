"""Real and broken input fed to every verb (data, features, run, score, evaluate, pretrain).

Each case asserts the documented outcome: a one-line ``error:`` naming the file and exit status 1
or 2, or correct handling (the clip skipped with a message, the rest processed); never a
traceback; and output written before is left unchanged. The cases are numbered ``[1]``-``[6]``
by kind of input; ``[holds]`` marks cases of long-standing behaviour. The kill-and-resume test
(case 7) is in tests/test_crash_resume.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dgmix.cli import app

BAD_NAME = os.fsdecode(b"section_00_source_test_normal_0098_pat_\xff.wav")


# ---------------------------------------------------------------------------------- helpers
def invoke(*args) -> object:
    """Run one verb in-process; a Python exception other than the CLI's exit is a failure."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"traceback instead of an error line: {res.exception!r}\n{res.output}")
    assert "Traceback" not in res.output
    return res


def one_line_error(res, *must_name: str) -> str:
    """The single ``error:`` line of a failed command, checked to name every ``must_name``."""
    assert res.exit_code in (1, 2), res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for name in must_name:
        assert name in errors[0], errors[0]
    return errors[0]


def tree_digest(root: Path) -> dict[str, str]:
    """blake2b of every file under ``root`` (relative path -> digest)."""
    return {str(p.relative_to(root)): hashlib.blake2b(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """One machine type, one section, 2.5-s clips: the smallest set `dgmix run` evaluates."""
    from dgmix.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("small")
    generate(out, SynthConfig(machines=("fan",), sections=("00",), train_source=4, train_target=2,
                              test_per_group=2, duration=2.5, seed=3), workers=1, progress=False)
    return out / "dev_data"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One feature cache for the module: each test computes only the clips it changed."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def data_copy(small_set, tmp_path) -> Path:
    """A private copy of the small set that a test may add broken files to."""
    dst = tmp_path / "data"
    shutil.copytree(small_set, dst)
    return dst


@pytest.fixture(scope="module")
def logmel_run(small_set, shared_cache, tmp_path_factory) -> Path:
    """A finished `dgmix run` of the logmel method (its detector and CSVs)."""
    out = tmp_path_factory.mktemp("logmel") / "run"
    res = invoke("run", "--data", small_set, "--methods", "logmel", "--preset", "tiny", "--out", out,
                 "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0, res.output
    return out


def _a_test_clip(root: Path) -> Path:
    return sorted((root / "fan" / "test").glob("*normal_0000*.wav"))[0]


def _write_wav(path: Path, x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), x, rate, subtype=subtype)
    return path


def _noise(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    x = np.random.default_rng(0).normal(0, 0.1, (int(seconds * rate), channels)).astype(np.float32)
    return x[:, 0] if channels == 1 else x


# ------------------------------------------------------------ [holds] broken audio files
def _add_broken(test_dir: Path) -> list[str]:
    (test_dir / "section_00_source_test_normal_0090_x_1.wav").write_text("this is text, not audio\n")
    (test_dir / "section_00_source_test_normal_0091_x_1.wav").write_bytes(b"")
    good = sorted(test_dir.glob("*.wav"))[0].read_bytes()
    (test_dir / "section_00_source_test_normal_0092_x_1.wav").write_bytes(good[: len(good) // 50])
    return ["0090", "0091", "0092"]


def test_broken_files_are_skipped_and_named_in_every_verb(data_copy, logmel_run, shared_cache, tmp_path):
    """[holds] text-as-WAV and empty files, [6] a truncated one (its header passed `data` before):
    listed by name, the rest processed."""
    ids = _add_broken(data_copy / "fan" / "test")
    res = invoke("data", data_copy)
    assert res.exit_code == 0
    for i in ids:
        assert f"_{i}_x_1.wav:" in res.output
    res = invoke("features", data_copy, "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0 and "3 error(s)" in res.output
    res = invoke("run", "--data", data_copy, "--methods", "logmel", "--preset", "tiny",
                 "--out", tmp_path / "run", "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0, res.output
    csv_text = (tmp_path / "run" / "logmel" / "scores" / "anomaly_score_fan_section_00_test.csv").read_text()
    assert not any(f"_{i}_" in csv_text for i in ids) and len(csv_text.splitlines()) == 8
    res = invoke("score", logmel_run / "logmel" / "fan" / "detector.pt", data_copy / "fan" / "test")
    assert res.exit_code == 0
    assert sum(line.startswith("skipped ") for line in res.stderr.splitlines()) == 3


def test_other_formats_are_handled(data_copy, shared_cache):
    """[holds] 8-channel, 44.1 kHz, 8 kHz and 12-s clips are read (downmixed / resampled)."""
    clips = sorted((data_copy / "fan" / "test").glob("*.wav"))[:4]
    for clip, (x, rate) in zip(clips, [(_noise(2.5, channels=8), 16000), (_noise(2.5, 44100), 44100),
                                       (_noise(2.5, 8000), 8000), (_noise(12.0), 16000)]):
        _write_wav(clip, x, rate)
    res = invoke("data", data_copy)
    assert res.exit_code == 0 and "could not be used" not in res.output
    res = invoke("features", data_copy, "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0 and " 0 error(s)" in res.output and "4 computed" in res.output


# ------------------------------------------------------------------ [1] non-UTF-8 names
def test_undecodable_name_is_skipped_in_every_verb(data_copy, logmel_run, shared_cache, tmp_path):
    """[1] one treatment everywhere: skipped with a message that names the bytes (b'...\\xff')."""
    shutil.copy(_a_test_clip(data_copy), data_copy / "fan" / "test" / BAD_NAME)
    said = "file name is not valid UTF-8"
    res = invoke("data", data_copy)
    assert res.exit_code == 0 and said in res.output and "\\xff" in res.output
    assert "total: 14 clips" in res.output
    res = invoke("features", data_copy, "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0 and "14 clips: " in res.output and "1 error(s)" in res.output
    assert said in res.output
    out = tmp_path / "run"
    res = invoke("run", "--data", data_copy, "--methods", "logmel", "--preset", "tiny", "--out", out,
                 "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0, res.output
    assert said in res.output
    raw = (out / "logmel" / "scores" / "anomaly_score_fan_section_00_test.csv").read_bytes()
    assert b"\xff" not in raw and len(raw.decode("utf-8").splitlines()) == 8
    res = invoke("score", logmel_run / "logmel" / "fan" / "detector.pt", data_copy / "fan" / "test")
    assert res.exit_code == 0 and said in res.stderr and "\\xff" in res.stderr
    assert len([line for line in res.stdout.splitlines() if "\t" in line]) == 8


# ------------------------------------------------------------------- [2] atomic writes
class _Crash(OSError):
    pass


@pytest.fixture()
def crash_on_rename(monkeypatch):
    """Every atomic rename fails, as if the process died between writing and renaming."""
    import dgmix.io_atomic as io_atomic

    def boom(src, dst):
        raise _Crash(f"simulated crash before renaming to {dst}")

    monkeypatch.setattr(io_atomic.os, "replace", boom)


def _writers(tmp_path: Path):
    from dgmix.config import load_config, write_config
    from dgmix.metrics import section_metrics
    from dgmix.metrics.tables import ResultsTable
    from dgmix.scoring import write_decisions, write_scores

    table = ResultsTable()
    y, s, d = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1])
    table.add_machine("m", "fan", {"00": section_metrics(y, s, d)})
    return {
        "anomaly_score_fan_section_00_test.csv":
            lambda: write_scores(tmp_path, "fan", "00", ["a.wav", "b.wav"], [0.5, 1.5]),
        "decision_result_fan_section_00_test.csv":
            lambda: write_decisions(tmp_path, "fan", "00", ["a.wav", "b.wav"], [0, 1]),
        "config.yaml": lambda: write_config(load_config("tiny"), tmp_path),
        "results.md": lambda: table.write(tmp_path),
    }


@pytest.mark.parametrize("name", ["anomaly_score_fan_section_00_test.csv", "decision_result_fan_section_00_test.csv",
                                  "config.yaml", "results.md"])
def test_writers_leave_the_old_file_or_nothing(name, tmp_path, monkeypatch):
    """[2] a crash mid-write leaves the previous complete file (or none), never a truncated one."""
    import dgmix.io_atomic as io_atomic

    writers = _writers(tmp_path)
    writers[name]()  # a first, complete version
    before = (tmp_path / name).read_bytes()
    monkeypatch.setattr(io_atomic.os, "replace", lambda s, d: (_ for _ in ()).throw(_Crash("crash")))
    (tmp_path / name).write_bytes(before)
    with pytest.raises(_Crash):
        writers[name]()
    assert (tmp_path / name).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_detector_and_score_csv_are_atomic(logmel_run, small_set, tmp_path, crash_on_rename):
    """[2] detectors and `dgmix score --csv` go through the same temp-file + rename."""
    from dgmix.scoring.detector import Detector

    detector = Detector.load(logmel_run / "logmel" / "fan" / "detector.pt")
    with pytest.raises(_Crash):
        detector.save(tmp_path / "detector.pt")
    assert not (tmp_path / "detector.pt").exists()
    with pytest.raises(_Crash):  # the CLI does not turn an OSError of ours into a line
        CliRunner().invoke(app, ["score", str(logmel_run / "logmel" / "fan" / "detector.pt"),
                                 str(_a_test_clip(small_set)), "--csv", str(tmp_path / "s.csv")],
                           catch_exceptions=False)
    assert not (tmp_path / "s.csv").exists()


def test_log_rows_are_whole_and_resume_drops_rows_after_the_checkpoint(tmp_path):
    """[2] log.jsonl: a cut last line is ignored on reading; a resumed run keeps rows up to its
    checkpoint's step, a fresh one starts empty (no appending to an old run's log)."""
    from dgmix.training.log import JsonlLogger, read_log

    path = tmp_path / "log.jsonl"
    log = JsonlLogger(path)
    for step in (1, 2, 3):
        log.log({"step": step, "loss": 1.0 / step})
    with open(path, "ab") as fh:
        fh.write(b'{"step": 4, "lo')  # a kill in the middle of a row
    assert [r["step"] for r in read_log(path)] == [1, 2, 3]
    JsonlLogger(path, keep_until_step=2)
    assert [r["step"] for r in read_log(path)] == [1, 2]
    assert path.read_bytes().endswith(b"\n")
    JsonlLogger(path)
    assert read_log(path) == []


# ------------------------------------------------------------ [3] used output folders
def test_second_run_into_a_used_folder_is_refused(small_set, logmel_run, tmp_path):
    """[3] a second `dgmix run` into a used folder is one line naming it; nothing changes."""
    out = tmp_path / "run"
    shutil.copytree(logmel_run, out)
    before = tree_digest(out)
    res = invoke("run", "--data", small_set, "--methods", "logmel", "--preset", "tiny", "--out", out,
                 "--no-progress")
    line = one_line_error(res, str(out), "--resume", "--overwrite")
    assert "not empty" in line
    assert tree_digest(out) == before


def test_overwrite_starts_clean(small_set, logmel_run, tmp_path):
    """[3] --overwrite removes the old run's other machine types and methods, keeps the cache."""
    out = tmp_path / "run"
    shutil.copytree(logmel_run, out)
    stale = out / "logmel" / "scores" / "anomaly_score_valve_section_00_test.csv"
    stale.write_text("section_00_source_test_normal_0000_x.wav,1.0\n")
    (out / "cache" / "marker").parent.mkdir(exist_ok=True)
    (out / "cache" / "marker").write_text("kept")
    res = invoke("run", "--data", small_set, "--methods", "logmel", "--preset", "tiny", "--out", out,
                 "--no-progress", "--overwrite")
    assert res.exit_code == 0, res.output
    assert not stale.exists() and (out / "cache" / "marker").is_file()
    res = invoke("evaluate", out / "logmel" / "scores", "--json")
    assert res.exit_code == 0 and "valve" not in res.stdout


def test_pretrain_into_a_used_folder_is_refused(small_set, tmp_path):
    """[3] `dgmix pretrain` without --resume into a used folder: refused, its files unchanged."""
    out = tmp_path / "pre"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\n")
    (out / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    before = tree_digest(out)
    res = invoke("pretrain", "--data", small_set, "--machine", "fan", "--preset", "tiny", "--out", out,
                 "--cache", tmp_path / "cache", "--no-progress")
    one_line_error(res, str(out), "--resume", "--overwrite")
    assert tree_digest(out) == before
    res = invoke("run", "--data", small_set, "--out", tmp_path / "fresh", "--resume")
    one_line_error(res, str(tmp_path / "fresh"), "nothing to resume")


# -------------------------------------------------------------- [4] empty data folders
def test_empty_data_folder_is_no_success(tmp_path):
    """[4] `dgmix run` on a folder with no clips: one line naming it, no output written."""
    empty = tmp_path / "empty"
    (empty / "fan" / "train").mkdir(parents=True)
    (empty / "fan" / "train" / "notes.txt").write_text("no clips here\n")
    res = invoke("run", "--data", empty, "--preset", "tiny", "--out", tmp_path / "run", "--no-progress")
    one_line_error(res, str(empty), "no usable clips")
    assert not (tmp_path / "run" / "results.md").exists()
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_score_with_no_usable_clip_names_the_input_and_writes_no_csv(logmel_run, tmp_path):
    """[4] `dgmix score` on a folder with no usable clip: one line naming it, no --csv file."""
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "section_00_source_test_normal_0000_a.wav").write_text("text")
    res = invoke("score", logmel_run / "logmel" / "fan" / "detector.pt", clips, "--csv", tmp_path / "s.csv")
    one_line_error(res, str(clips), "no clip could be scored")
    assert not (tmp_path / "s.csv").exists()


# --------------------------------------------------------- [5] one line, not a traceback
@pytest.mark.parametrize("setting", ["sample_rate: 0", "hop_length: -1", "n_mels: 0", "window_hop: 0"])
def test_feature_settings_out_of_range(setting, small_set, tmp_path):
    """[5]/[holds] out-of-range feature settings in a config file: one line naming the file."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"features:\n  {setting}\n")
    for args in (["features", small_set, "--cache", tmp_path / "c", "--config", cfg],
                 ["run", "--data", small_set, "--config", cfg, "--out", tmp_path / "r", "--preset", "tiny"],
                 ["data", small_set, "--config", cfg]):
        res = invoke(*args)
        one_line_error(res, str(cfg), setting.split(":")[0])


def _edited_bundle(src: Path, dst: Path, edit) -> Path:
    raw = torch.load(src, weights_only=True)
    edit(raw)
    torch.save(raw, dst)
    return dst


@pytest.mark.parametrize("edit", ["no_state", "no_params", "no_kind", "bad_state", "bad_rate"])
def test_damaged_detector_bundle(edit, logmel_run, small_set, tmp_path):
    """[5] a bundle with a field missing or wrong: one line naming it, never a KeyError."""
    edits = {
        "no_state": lambda r: r.pop("state"),
        "no_params": lambda r: r["meta"].pop("params"),
        "no_kind": lambda r: r["meta"].pop("kind"),
        "bad_state": lambda r: r.__setitem__("state", {"nonsense": torch.zeros(2)}),
        "bad_rate": lambda r: r["meta"]["params"].__setitem__("sample_rate", 0),
    }
    det = _edited_bundle(logmel_run / "logmel" / "fan" / "detector.pt", tmp_path / "det.pt", edits[edit])
    res = invoke("score", det, _a_test_clip(small_set))
    one_line_error(res, str(det))


def test_bundle_sample_rate_differs_from_the_clips(logmel_run, data_copy, tmp_path):
    """[5] a detector made for 8 kHz scoring 16 kHz clips: the clips are resampled to the
    detector's rate (as for training); a clip then too short is skipped with its reason."""
    def to_8k(raw):
        raw["meta"]["params"]["sample_rate"] = 8000
    det = _edited_bundle(logmel_run / "logmel" / "fan" / "detector.pt", tmp_path / "det.pt", to_8k)
    long_clip = _write_wav(data_copy / "fan" / "test" / "section_00_source_test_normal_0077_a_1.wav",
                           _noise(5.0))
    res = invoke("score", det, long_clip, _a_test_clip(data_copy), "--section", "00")
    assert res.exit_code == 0, res.output
    assert "0077" in res.stdout and "shorter than one window" in res.stderr


def test_pickled_or_truncated_detector(logmel_run, small_set, tmp_path):
    """[holds] a pickled payload is refused (weights_only), a truncated bundle gives one line."""
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"meta": Payload()}, evil)
    one_line_error(invoke("score", evil, _a_test_clip(small_set)), str(evil))
    cut = tmp_path / "cut.pt"
    data = (logmel_run / "logmel" / "fan" / "detector.pt").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    one_line_error(invoke("score", cut, _a_test_clip(small_set)), str(cut))


def test_evaluate_malformed_csv(tmp_path):
    """[holds] `dgmix evaluate` answers a malformed CSV with one line naming it."""
    scores = tmp_path / "scores"
    scores.mkdir()
    bad = scores / "anomaly_score_fan_section_00_test.csv"
    bad.write_text("section_00_source_test_normal_0000_a.wav,not-a-number\n")
    one_line_error(invoke("evaluate", scores), str(bad), "line 1")


# --------------------------------------------------- [6] data says what later stages do
def _add_unusable(test_dir: Path) -> dict[str, str]:
    short = _write_wav(test_dir / "section_00_source_test_normal_0080_a_1.wav", _noise(1.0))
    zero = _write_wav(test_dir / "section_00_source_test_normal_0081_a_1.wav", np.zeros(40000, np.float32))
    x = _noise(2.5)
    x[100] = np.nan
    nan = _write_wav(test_dir / "section_00_source_test_normal_0082_a_1.wav", x, subtype="FLOAT")
    return {short.name: "shorter than one window", zero.name: "digital silence", nan.name: "NaN"}


def test_data_reports_clips_the_later_stages_refuse(data_copy, logmel_run, shared_cache):
    """[6] 1-s, all-zero and NaN clips: `data` lists them with the reason `features`, `run` and
    `score` give, and the flags named in the messages (--pad, --allow-silence) accept them."""
    bad = _add_unusable(data_copy / "fan" / "test")
    res_data = invoke("data", data_copy)
    res_feat = invoke("features", data_copy, "--cache", shared_cache, "--no-progress")
    res_score = invoke("score", logmel_run / "logmel" / "fan" / "detector.pt", data_copy / "fan" / "test")
    assert res_data.exit_code == res_feat.exit_code == res_score.exit_code == 0
    assert "total: 14 clips" in res_data.output
    for name, reason in bad.items():
        data_line = next(line for line in res_data.output.splitlines() if name in line)
        feat_line = next(line for line in res_feat.output.splitlines() if name in line)
        assert reason in data_line and data_line.strip() == feat_line.strip()
        assert reason in next(line for line in res_score.stderr.splitlines() if name in line)
    assert "--pad" in res_data.output and "--allow-silence" in res_data.output
    res = invoke("data", data_copy, "--pad", "--allow-silence")
    assert "total: 16 clips" in res.output
    res = invoke("features", data_copy, "--cache", shared_cache, "--no-progress", "--pad", "--allow-silence")
    assert "1 error(s)" in res.output  # the NaN clip, which no flag accepts


def test_section_option_against_the_name(logmel_run, small_set):
    """--section is for clips whose names carry none: a different section in the name is refused."""
    det = logmel_run / "logmel" / "fan" / "detector.pt"
    clip = _a_test_clip(small_set)  # a section_00 clip
    line = one_line_error(invoke("score", det, clip, "--section", "01", "--on-error", "fail"), clip.name)
    assert "--section 01 contradicts the section in the name (00)" in line
    res = invoke("score", det, clip, "--section", "00")
    assert res.exit_code == 0 and clip.name in res.stdout


def test_export_into_a_folder_and_serve_on_a_bad_port(logmel_run, tmp_path):
    det = logmel_run / "logmel" / "fan" / "detector.pt"
    line = one_line_error(invoke("export", det, "--out", tmp_path), str(tmp_path))
    assert "is a folder" in line
    assert invoke("export", det, "--out", tmp_path).exit_code == 2
    res = invoke("serve", det, "--port", "99999")
    assert res.exit_code == 2 and "--port" in res.output and "65535" in res.output


def test_a_failed_start_leaves_out_as_it_found_it(small_set, tmp_path):
    """A wrong --machines or an empty --methods: nothing is left in --out, so the corrected command
    runs (it is not refused as a used folder)."""
    out = tmp_path / "run"
    one_line_error(invoke("run", "--data", small_set, "--machines", "nope", "--out", out, "--preset", "tiny",
                          "--no-progress"), "nope")
    assert not out.exists()
    one_line_error(invoke("run", "--data", small_set, "--methods", "", "--out", out, "--preset", "tiny",
                          "--no-progress"), "--methods")
    assert not out.exists()
    empty = tmp_path / "empty"  # an existing empty folder stays, empty
    empty.mkdir()
    one_line_error(invoke("run", "--data", small_set, "--machines", "nope", "--out", empty, "--preset", "tiny",
                          "--no-progress"), "nope")
    assert empty.is_dir() and not any(empty.iterdir())
    res = invoke("run", "--data", small_set, "--methods", "logmel", "--out", out, "--preset", "tiny", "--no-progress")
    assert res.exit_code == 0, res.output


def test_resume_refuses_what_it_cannot_honour(small_set, tmp_path):
    """--resume compares the request with the run: another seed, preset, setting or data folder,
    or changed clips, is refused in one line naming it; more methods are accepted."""
    out = tmp_path / "run"
    base = ["run", "--data", small_set, "--out", out, "--preset", "tiny", "--no-progress", "--methods", "logmel"]
    assert invoke(*base).exit_code == 0
    line = one_line_error(invoke(*base, "--resume", "--seed", "5"), "--resume")
    assert "seed is 0" in line and "5 now" in line
    one_line_error(invoke(*base[:5], "--preset", "cpu", "--no-progress", "--resume"), "--preset tiny, not cpu")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("features:\n  n_fft: 2048\n")
    assert "features.n_fft is 1024" in one_line_error(invoke(*base, "--resume", "--config", cfg), "--resume")
    other = tmp_path / "other"
    shutil.copytree(small_set, other)
    one_line_error(invoke("run", "--data", other, "--out", out, "--no-progress", "--resume"), str(other))
    # the same folder with a clip gone
    moved = tmp_path / "moved"
    shutil.copytree(small_set, moved)
    clip = sorted((moved / "fan" / "test").glob("*.wav"))[0]
    clip.unlink()
    out2 = tmp_path / "run2"
    base2 = ["run", "--data", moved, "--out", out2, "--preset", "tiny", "--no-progress", "--methods", "logmel"]
    assert invoke(*base2).exit_code == 0
    shutil.copy(sorted((small_set / "fan" / "test").glob("*.wav"))[0], clip)
    assert "clips changed since the run started" in one_line_error(invoke(*base2, "--resume"), "--resume")
    # accepted: the same request, without --data (the run's folder), and with a method added
    res = invoke("run", "--out", out, "--no-progress", "--resume", "--methods", "logmel,random")
    assert res.exit_code == 0, res.output
    assert "finished in the earlier run, kept" in res.output and "random" in res.output
    assert json.loads((out / "run_info.json").read_text())["data_root"] == str(small_set.resolve())


def test_every_skipped_clip_is_counted_and_listed(data_copy, logmel_run, shared_cache, tmp_path):
    """A test clip cut in half (its header says more), an unreadable one: the run says how many it
    scored, lists both in skipped.csv with the reason, keeps the counts in results.json; with
    --on-error fail it stops at the first; score refuses the cut clip too."""
    test_dir = data_copy / "fan" / "test"
    n_test = len(list(test_dir.glob("*.wav")))
    full = _write_wav(test_dir / "section_00_source_test_normal_0080_x_1.wav", _noise(3.0))
    cut = test_dir / "section_00_source_test_normal_0081_x_1.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 16000 * 2])  # header says 3 s, 2 s of data
    full.unlink()
    (test_dir / "section_00_source_test_normal_0082_x_1.wav").write_text("not audio\n")
    out = tmp_path / "run"
    res = invoke("run", "--data", data_copy, "--methods", "logmel", "--preset", "tiny", "--out", out,
                 "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0, res.output
    assert f"scored {n_test} of {n_test + 2} test clips, 2 skipped" in res.output
    assert "skipped" in res.stderr and "0082" in res.stderr and "0082" not in res.stdout  # skip lines: stderr
    rows = (out / "skipped.csv").read_text().splitlines()
    assert rows[0] == "path,machine,split,reason" and len(rows) == 3
    assert any("0081" in r and "truncated WAV: its header says 3.00 s, the file holds 2.00 s" in r for r in rows)
    assert any("0082" in r and ",fan,test," in r for r in rows)
    counts = json.loads((out / "results.json").read_text())["logmel"]["test_clips"]
    assert counts["found"] == n_test + 2 and counts["scored"] == n_test and counts["skipped"] == 2
    line = one_line_error(invoke("run", "--data", data_copy, "--methods", "logmel", "--preset", "tiny",
                                 "--out", tmp_path / "strict", "--cache", shared_cache, "--no-progress",
                                 "--on-error", "fail"), "--on-error fail")
    assert "0081" in line or "0082" in line
    assert not (tmp_path / "strict").exists()
    res = invoke("score", logmel_run / "logmel" / "fan" / "detector.pt", cut)
    assert res.exit_code == 1 and "truncated WAV" in res.stderr


def test_detector_files_that_are_not_detectors_say_what_they_are(small_set, tmp_path):
    """Empty, a folder, a symlink loop, text, a cut zip: one line in words, never torch's advice."""
    clip = _a_test_clip(small_set)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello\n")
    torch.save({"meta": {}, "state": {}}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    os.symlink(tmp_path / "loop.pt", tmp_path / "loop.pt")
    (tmp_path / "folder.pt").mkdir()
    expected = {"empty.pt": "empty file (0 bytes)", "text.pt": "not a torch file", "cut.pt": "damaged: cut short",
                "loop.pt": "a broken symbolic link", "folder.pt": "is a folder"}
    for name, words in expected.items():
        line = one_line_error(invoke("score", tmp_path / name, clip), name)
        assert words in line and "weights_only" not in line and "EOFError" not in line, line
    # a folder or a link loop given as the config file says so, not "not found"
    for name, words in (("folder.pt", "is a folder; give the config file itself"), ("loop.pt", "broken symbolic link")):
        line = one_line_error(invoke("run", "--data", small_set, "--config", tmp_path / name, "--out",
                                     tmp_path / "r", "--no-progress"), name)
        assert words in line, line


def test_flac_is_read_by_every_verb(data_copy, logmel_run, shared_cache, tmp_path):
    """One audio policy: a FLAC clip is listed by data, scored by run and by score (the same score
    as the WAV of the same samples); an .mp3 is named and refused."""
    wav = _a_test_clip(data_copy)
    x, rate = sf.read(str(wav))
    flac = wav.with_suffix(".flac")
    sf.write(str(flac), x, rate, format="FLAC")
    copy = tmp_path / wav.name
    shutil.move(wav, copy)  # the data set holds the FLAC in its place
    (data_copy / "fan" / "test" / "x.mp3").write_bytes(b"ID3 not read")
    res = invoke("data", data_copy)
    assert res.exit_code == 0 and flac.name not in res.output.split("could not be used")[-1]
    assert "x.mp3: not a WAV or FLAC file (.mp3)" in res.output
    out = tmp_path / "run"
    res = invoke("run", "--data", data_copy, "--methods", "logmel", "--preset", "tiny", "--out", out,
                 "--cache", shared_cache, "--no-progress")
    assert res.exit_code == 0, res.output
    scores = (out / "logmel" / "scores" / "anomaly_score_fan_section_00_test.csv").read_text()
    assert flac.name in scores
    det = logmel_run / "logmel" / "fan" / "detector.pt"
    by_flac = invoke("score", det, flac).stdout.split("\t")[1]
    by_wav = invoke("score", det, copy).stdout.split("\t")[1]
    assert by_flac == by_wav
    assert flac.name in invoke("score", det, data_copy / "fan" / "test").stdout  # folders: .flac too


def test_one_exit_status_per_kind_of_error(small_set, tmp_path):
    """Usage 2 (an error naming an option), bad input or data 1, in every verb."""
    out = tmp_path / "run"
    for args in (["run", "--data", small_set, "--methods", "", "--out", out],
                 ["run", "--data", small_set, "--jobs", "0", "--out", out, "--preset", "tiny"],
                 ["synth", tmp_path / "s", "--set", "nope"],
                 ["data", small_set, "--test-normals", "x"]):
        res = invoke(*args, "--no-progress") if args[0] != "data" else invoke(*args)
        assert res.exit_code == 2, (args, res.output)
    for args in (["run", "--data", tmp_path / "missing", "--out", out, "--no-progress"],
                 ["score", tmp_path / "missing.pt", small_set]):
        assert invoke(*args).exit_code == 1, args
