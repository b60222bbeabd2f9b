"""Feature cache (content-keyed, atomic, parallel fill) and the ``dgmix features`` command."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

import dgmix
from dgmix.errors import InputError
from dgmix.features import FeatureCache, FeatureParams, log_mel

SR = 16000


def _load_cli_module():
    """``dgmix/cli/features.py`` on its own, without ``dgmix.cli.__init__`` (other verbs)."""
    path = Path(dgmix.__file__).parent / "cli" / "features.py"
    spec = importlib.util.spec_from_file_location("_dgmix_cli_features_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


register = _load_cli_module().register


def write_clip(path: Path, seconds: float = 2.5, seed: int = 0, channels: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = 0.2 * np.sin(2 * np.pi * (300 + 100 * seed) * t) + 0.02 * rng.standard_normal(n)
    if channels > 1:
        y = np.stack([y * (k + 1) / channels for k in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), SR, subtype="PCM_16")
    return path


def reference(path: Path, **load_kw) -> np.ndarray:
    """Independent path: soundfile -> log_mel (the front end is checked against librosa elsewhere)."""
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    return log_mel(y.mean(axis=1) if "channel" not in load_kw else y[:, load_kw["channel"]], sr)


def npy_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


def test_miss_then_hit(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", FeatureParams())
    feats, computed = cache.get_status(clip)
    assert computed
    assert feats.shape == (128, 1 + int(2.5 * SR) // 512) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, reference(clip))
    assert len(npy_files(tmp_path / "cache")) == 1
    assert cache.contains(clip)
    again, computed = cache.get_status(clip)
    assert not computed
    np.testing.assert_array_equal(again, feats)
    # a fresh cache object on the same folder (another process) finds it too
    fresh = FeatureCache(tmp_path / "cache", FeatureParams())
    assert fresh.get_status(clip)[1] is False
    np.testing.assert_array_equal(fresh.get(clip), feats)
    # no temporary files are left behind; settings are written for humans
    assert not [p for p in (tmp_path / "cache").rglob(".tmp-*")]
    settings = json.loads((cache.root / "settings.json").read_text())
    assert settings["params"]["n_mels"] == 128


def test_key_is_content_not_name(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", FeatureParams())
    cache.get(clip)
    copy = tmp_path / "other" / "renamed.wav"
    copy.parent.mkdir()
    shutil.copy(clip, copy)
    assert cache.get_status(copy)[1] is False  # same bytes -> hit

    changed = tmp_path / "changed.wav"
    data = bytearray(clip.read_bytes())
    data[5000] ^= 0x01  # one bit of one sample
    changed.write_bytes(bytes(data))
    feats, computed = cache.get_status(changed)
    assert computed  # different bytes -> miss
    np.testing.assert_array_equal(feats, reference(changed))
    assert len(npy_files(tmp_path / "cache")) == 2

    # editing a file in place (new content under the same name) is a miss too
    write_clip(clip, seed=7)
    assert cache.get_status(clip)[1] is True


def test_settings_are_part_of_the_key(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.wav")
    base = FeatureCache(tmp_path / "cache", FeatureParams())
    base.get(clip)
    other = FeatureCache(tmp_path / "cache", FeatureParams(n_mels=64))
    feats, computed = other.get_status(clip)
    assert computed and feats.shape[0] == 64
    # windowing settings do not change the spectrogram: shared entry
    windowing = FeatureCache(tmp_path / "cache", FeatureParams(frames=32, window_hop=4))
    assert windowing.get_status(clip)[1] is False
    # loader options and precision are part of the key
    assert FeatureCache(tmp_path / "cache", FeatureParams(pad=True)).key != base.key
    assert FeatureCache(tmp_path / "cache", dtype="float64").key != base.key
    chan = FeatureCache(tmp_path / "cache", FeatureParams(channel=0))
    assert chan.key != base.key and chan.get_status(clip)[1] is True


def test_channel_option_reaches_the_loader(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "stereo.wav", channels=2)
    mean = FeatureCache(tmp_path / "cache").get(clip)
    ch1 = FeatureCache(tmp_path / "cache", FeatureParams(channel=1)).get(clip)
    np.testing.assert_array_equal(ch1, reference(clip, channel=1))
    assert np.abs(mean - ch1).max() > 1.0


def test_corrupt_entry_is_recomputed(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache")
    good = cache.get(clip)
    cache.entry_path(clip).write_bytes(b"not an npy file")
    feats, computed = cache.get_status(clip)
    assert computed
    np.testing.assert_array_equal(feats, good)


def test_bad_files_and_short_clips(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    short = write_clip(tmp_path / "short.wav", seconds=1.0)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(InputError, match="bad.wav"):
        cache.get(bad)
    with pytest.raises(InputError, match="short.wav.*shorter than one window"):
        cache.get(short)
    with pytest.raises(InputError, match="missing.wav"):
        cache.get(tmp_path / "missing.wav")
    padded = FeatureCache(tmp_path / "cache", FeatureParams(pad=True)).get(short)
    assert padded.shape == (128, 64)  # padded to exactly one window of 64 frames
    with pytest.raises(ValueError, match="unknown loader option"):
        FeatureCache(tmp_path / "cache", loader_options={"channel": 0})  # channel lives in FeatureParams


def test_accepts_records_with_a_path(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.wav")

    class Rec:
        path = clip

    cache = FeatureCache(tmp_path / "cache")
    np.testing.assert_array_equal(cache.get(Rec()), cache.get(clip))


@pytest.mark.parametrize("workers", [1, 2])
def test_fill_twice_computes_nothing_the_second_time(tmp_path: Path, workers: int) -> None:
    clips = [write_clip(tmp_path / f"c{i}.wav", seed=i) for i in range(4)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....garbage")
    cache = FeatureCache(tmp_path / "cache")
    # min_parallel=0: really start worker processes for these few clips when workers=2
    report = cache.fill([*clips, bad], workers=workers, progress=False, min_parallel=0)
    assert (report.computed, report.cached) == (4, 0)
    assert [p for p, _ in report.errors] == [bad]
    assert "not a readable audio file" in report.errors[0][1]
    assert report.total_frames == 4 * 79
    assert report.total_windows(64, 8) == 4 * 2
    for c in clips:
        np.testing.assert_array_equal(cache.get(c), reference(c))

    again = cache.fill([*clips, bad], workers=workers, progress=False, min_parallel=0)
    assert (again.computed, again.cached, len(again.errors)) == (0, 4, 1)
    assert again.frames == report.frames

    with pytest.raises(InputError, match="bad.wav"):
        cache.fill([bad, *clips], workers=workers, progress=False, on_error="fail")
    # a clip deleted from the cache is recomputed, the others are not
    cache.entry_path(clips[2]).unlink()
    third = cache.fill(clips, workers=workers, progress=False, min_parallel=0)
    assert (third.computed, third.cached) == (1, 3)


# ----------------------------------------------------------------------------- CLI
def _dataset(root: Path) -> list[Path]:
    folder = root / "fan" / "train"
    clips = [
        write_clip(folder / f"section_00_source_train_normal_{i:04d}_m-n_W.wav", seed=i)
        for i in range(3)
    ]
    (folder / "section_00_source_train_normal_0009_m-n_W.wav").write_text("junk")
    return clips


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keep "features" as a named sub-command
        pass

    return app


def test_cli_features_json(tmp_path: Path) -> None:
    _dataset(tmp_path / "data")
    app = _app()
    runner = CliRunner()
    args = ["features", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"),
            "--workers", "1", "--no-progress", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["clips"] == 4
    assert (summary["computed"], summary["cached"]) == (3, 0)
    assert len(summary["errors"]) == 1 and summary["errors"][0]["path"].endswith("0009_m-n_W.wav")
    assert summary["frames"] == 3 * 79 and summary["windows"] == 3 * 2

    result = runner.invoke(app, args)
    summary = json.loads(result.stdout)
    assert (summary["computed"], summary["cached"]) == (0, 3)


def test_cli_features_text_and_fail(tmp_path: Path) -> None:
    _dataset(tmp_path / "data")
    app = _app()
    runner = CliRunner()
    base = ["features", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"), "--workers", "1",
            "--no-progress"]
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    assert "4 clips: 3 computed, 0 from cache, 1 error(s); 237 frames, 6 windows" in result.stdout
    assert "0009_m-n_W.wav: not a readable audio file" in result.stdout

    result = runner.invoke(app, [*base, "--on-error", "fail"])
    assert result.exit_code == 1
    assert "0009_m-n_W.wav" in result.output

    result = runner.invoke(app, ["features", str(tmp_path / "nope"), "--cache", str(tmp_path)])
    assert result.exit_code == 2
    assert "dataset folder not found" in result.output


def test_known_hashes_are_not_read_again_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    from dgmix.features import cache as cache_mod

    clip = write_clip(tmp_path / "a.wav")
    first = FeatureCache(tmp_path / "cache").entry_path(clip)
    lines = (tmp_path / "cache" / cache_mod.HASH_INDEX).read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(first.stem)
    (tmp_path / "cache" / cache_mod.HASH_INDEX).write_text(lines[0] + "\n" + "torn\tline\n")

    def no_reading(path, chunk_size=0):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(cache_mod, "content_hash", no_reading)
    assert FeatureCache(tmp_path / "cache").entry_path(clip) == first  # a new process: the index answers
    write_clip(clip, seed=1)  # new content: new size/times, so it must be hashed again
    with pytest.raises(AssertionError, match="hashed again"):
        FeatureCache(tmp_path / "cache").entry_path(clip)
    monkeypatch.undo()
    assert FeatureCache(tmp_path / "cache").entry_path(clip) != first
