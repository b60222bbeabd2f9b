"""``dgmix watch``: each clip that lands in a folder is scored once, after it has stopped growing,
logged as one JSON line, and not scored again after a restart unless it changed."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgmix.cli import app
from dgmix.errors import InputError
from dgmix.scoring.clips import load_detector, score_clip
from dgmix.watch import Watcher, WatchOptions, is_watched_name, read_log


@pytest.fixture(scope="module")
def detector_path(tiny_detectors) -> Path:
    return tiny_detectors / "logmel" / "fan" / "detector.pt"


@pytest.fixture(scope="module")
def clips(tiny_synth) -> list[Path]:
    test = tiny_synth / "fan" / "test"
    return sorted(test.glob("section_00_*_anomaly_*.wav"))[:2] + sorted(test.glob("section_01_*_normal_*.wav"))[:2]


def _entries(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns / 1e9


def _watcher(detector_path, folder, log, errors=None, alarms=None, **kw) -> Watcher:
    return Watcher(load_detector(detector_path), folder, log, WatchOptions(**kw),
                   echo=(alarms if alarms is not None else []).append,
                   echo_err=(errors if errors is not None else []).append)


def test_a_clip_written_in_two_chunks_is_scored_once_when_complete(detector_path, clips, tmp_path):
    folder, log = tmp_path / "in", tmp_path / "watch.jsonl"
    folder.mkdir()
    data = clips[0].read_bytes()
    dest = folder / clips[0].name
    dest.write_bytes(data[: len(data) // 2])
    w = _watcher(detector_path, folder, log, settle=2.0)
    wall = _mtime(dest)  # the clock of the file system, as if the polls came right after the writes
    assert w.poll(now=0.0, wall=wall) == 0  # just written: not settled
    with open(dest, "ab") as fh:
        fh.write(data[len(data) // 2:])
    assert w.poll(now=1.5, wall=_mtime(dest)) == 0  # it grew: the settle time starts again
    assert w.poll(now=3.0, wall=_mtime(dest) + 1.5) == 0
    assert w.poll(now=3.6, wall=_mtime(dest) + 2.1) == 1
    assert w.poll(now=9.0, wall=_mtime(dest) + 9.0) == 0  # logged: never again
    (entry,) = _entries(log)
    expected = score_clip(load_detector(detector_path), dest)
    assert entry["file"] == dest.name and entry["size"] == len(data)
    assert entry["score"] == pytest.approx(expected.score, rel=1e-9)
    assert entry["section"] == "00" and entry["decision"] == expected.decision
    assert entry["threshold"] == pytest.approx(expected.threshold, rel=1e-12)
    assert entry["p_value"] == pytest.approx(expected.p_value, rel=1e-12)
    assert entry["method"] == "logmel" and entry["machine"] == "fan"
    assert len(entry["bands_hz"]) == 3 and all(lo < hi for lo, hi in entry["bands_hz"])
    assert len(entry["times_s"]) == 3 and all(0 <= t <= 3.0 for t in entry["times_s"])
    # the same number `dgmix score` prints for the clip
    res = CliRunner().invoke(app, ["score", str(detector_path), str(dest)])
    assert res.exit_code == 0, res.output
    assert res.output.split("\t")[1] == f"{entry['score']:.6g}"


def test_a_clip_that_was_there_before_the_watch_is_scored_at_the_first_poll(detector_path, clips, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clips[0], folder / clips[0].name)
    w = _watcher(detector_path, folder, tmp_path / "log.jsonl", settle=2.0)
    assert w.poll(now=0.0, wall=_mtime(folder / clips[0].name) + 2.5) == 1  # modified 2.5 s ago


def test_clips_copied_in_while_it_runs_are_each_logged_once(detector_path, clips, tmp_path):
    folder, log = tmp_path / "in", tmp_path / "watch.jsonl"
    folder.mkdir()
    alarms: list[str] = []
    w = _watcher(detector_path, folder, log, alarms=alarms, interval=0.05, settle=0.5, max_files=3, timeout=120)
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=w.run()))
    thread.start()
    shutil.copy(clips[0], folder / clips[0].name)
    (folder / "sub").mkdir()
    shutil.copy(clips[2], folder / "sub" / clips[2].name)
    part = folder / (clips[1].name + ".part")  # the safe way for a slow writer: a .part name, renamed at the end
    shutil.copy(clips[1], part)
    part.rename(folder / clips[1].name)
    thread.join(timeout=120)
    assert not thread.is_alive()
    entries = _entries(log)
    assert sorted(e["file"] for e in entries) == sorted([clips[0].name, clips[1].name, f"sub/{clips[2].name}"])
    summary = result["summary"]
    assert summary.scored == 3 and summary.skipped == 0
    assert summary.alarms == sum(e["decision"] == 1 for e in entries) == len(alarms)
    assert all(a.startswith("ALARM ") for a in alarms)


def test_a_bad_file_is_logged_with_its_error_and_not_retried_until_it_changes(detector_path, clips, tmp_path):
    folder, log = tmp_path / "in", tmp_path / "watch.jsonl"
    folder.mkdir()
    bad = folder / "section_00_0001.wav"
    bad.write_bytes(b"not audio at all")
    errors: list[str] = []
    w = _watcher(detector_path, folder, log, errors=errors, settle=0.0)
    assert w.poll(now=0.0) == 1
    assert len(errors) == 1 and errors[0].startswith("skipped ") and str(bad) in errors[0]
    (entry,) = _entries(log)
    assert entry["file"] == bad.name and "score" not in entry and "audio" in entry["error"]
    assert w.poll(now=1.0) == 0 and len(errors) == 1  # not retried
    shutil.copy(clips[0], bad)  # replaced by a real clip: scored
    assert w.poll(now=2.0) == 1
    assert "score" in _entries(log)[-1] and w.summary.skipped == 1 and w.summary.scored == 1


def test_a_restart_scores_only_new_or_changed_clips(detector_path, clips, tmp_path):
    import os

    folder, log = tmp_path / "in", tmp_path / "watch.jsonl"
    folder.mkdir()
    for c in clips[:3]:
        shutil.copy(c, folder / c.name)
    assert _watcher(detector_path, folder, log, settle=0.0).poll(now=0.0) == 3
    again = _watcher(detector_path, folder, log, settle=0.0)
    assert len(again.done) == 3 and again.poll(now=0.0) == 0
    changed = folder / clips[1].name
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched (re-recorded): scored again
    shutil.copy(clips[3], folder / clips[3].name)
    third = _watcher(detector_path, folder, log, settle=0.0)
    assert third.poll(now=0.0) == 2
    names = [e["file"] for e in _entries(log)]
    assert sorted(names[3:]) == sorted([clips[1].name, clips[3].name])


def test_a_log_line_cut_by_a_kill_is_ignored_and_its_clip_scored_again(detector_path, clips, tmp_path):
    folder, log = tmp_path / "in", tmp_path / "watch.jsonl"
    folder.mkdir()
    for c in clips[:2]:
        shutil.copy(c, folder / c.name)
    _watcher(detector_path, folder, log, settle=0.0, max_files=2).run(sleep=lambda s: None)
    text = log.read_text()
    log.write_text(text[: text.rfind("\n", 0, len(text) - 1) + 1] + text.splitlines()[-1][:40])  # last line cut
    errors: list[str] = []
    w = _watcher(detector_path, folder, log, errors=errors, settle=0.0, max_files=1)
    assert len(w.done) == 1 and any("1 line(s) are not watch-log entries" in e for e in errors)
    assert w.run(sleep=lambda s: None).scored == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["file"] == json.loads(text.splitlines()[-1])["file"]
    assert len(read_log(log)) == 2  # the new line is whole, after the cut one


def test_ctrl_c_ends_the_watch_with_its_summary(detector_path, clips, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clips[0], folder / clips[0].name)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    summary = _watcher(detector_path, folder, tmp_path / "log.jsonl", settle=0.0).run(sleep=interrupt)
    assert summary.scored == 1


@pytest.mark.parametrize("rel,watched", [
    ("a.wav", True), ("sub/a.WAV", True), ("a.flac", True), (".a.wav", False), ("a.wav.part", False),
    ("a.wav.tmp", False), (".incoming/a.wav", False), ("a.txt", False), ("a.npy", False),
])
def test_which_names_are_watched(rel, watched):
    assert is_watched_name(Path(rel)) is watched


@pytest.mark.parametrize("kw,option", [
    ({"interval": 0.0}, "--interval"), ({"settle": -1.0}, "--settle"), ({"settle": float("nan")}, "--settle"),
    ({"max_files": 0}, "--max-files"), ({"timeout": 0.0}, "--timeout"),
])
def test_bad_settings_name_their_option(kw, option):
    with pytest.raises(InputError, match=f"^{option}: "):
        WatchOptions(**kw)


def test_the_command_scores_logs_and_ends(detector_path, clips, tmp_path):
    folder, log = tmp_path / "in", tmp_path / "logs" / "watch.jsonl"
    folder.mkdir()
    for c in clips:
        shutil.copy(c, folder / c.name)
    (folder / "notes.txt").write_text("not a clip")
    res = CliRunner().invoke(app, ["watch", str(detector_path), str(folder), "--log", str(log), "--settle", "0",
                                   "--max-files", "3", "--interval", "0.05"])
    assert res.exit_code == 0, res.output
    assert f"watched {folder}: 3 clip(s) scored" in res.output and len(_entries(log)) == 3
    res = CliRunner().invoke(app, ["watch", str(detector_path), str(folder), "--log", str(log), "--settle", "0",
                                   "--timeout", "0.3", "--interval", "0.05"])
    assert res.exit_code == 0, res.output
    assert "3 clip(s) already in it" in res.output and f"watched {folder}: 1 clip(s) scored" in res.output


def test_the_command_refuses_bad_arguments_in_one_line(detector_path, tmp_path):
    res = CliRunner().invoke(app, ["watch", str(detector_path), str(tmp_path / "nope"), "--log", str(tmp_path / "l")])
    assert res.exit_code == 1 and "nope: no such folder" in res.output
    res = CliRunner().invoke(app, ["watch", str(detector_path), str(tmp_path), "--log", str(tmp_path / "l"),
                                   "--interval", "0"])
    assert res.exit_code == 2 and "--interval: must be > 0 seconds" in res.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    res = CliRunner().invoke(app, ["watch", str(junk), str(tmp_path), "--log", str(tmp_path / "l")])
    assert res.exit_code == 1 and str(junk) in res.output
